"""retrain: from a folder of labelled pictures to an exported, evaluated classifier."""

from retrain.config import RetrainConfig
from retrain.train import RetrainResult, retrain
