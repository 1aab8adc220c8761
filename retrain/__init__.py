"""retrain: from a folder of labelled pictures to an exported, evaluated classifier."""
