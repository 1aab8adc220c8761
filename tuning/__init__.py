"""tuning: hyperparameter search over retraining settings with keras-tuner."""
