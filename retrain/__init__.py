"""retrain: from a folder of labelled pictures to an exported, evaluated classifier.

`retrain.retrain(...)` trains and exports; `retrain.review_labels(...)` finds the pictures
whose labels are probably wrong; `retrain.Predictor(model_dir)` and
`retrain.predict(...)` answer for new pictures; `retrain.serve(...)` answers them over
HTTP. They are imported on first use, so reading a folder (`retrain.data.images`,
`retrain.data.dataset`) does not load TensorFlow.
"""
import importlib

# Imported eagerly: neither loads TensorFlow until a model loads.
from retrain.prediction.predictor import Predictor, predict

_LAZY = {
    "RetrainConfig": "retrain.config",
    "RetrainResult": "retrain.job",
    "retrain": "retrain.job",
    "ReviewConfig": "retrain.review.labels",
    "review_labels": "retrain.review.labels",
    "serve": "retrain.serving",
}

__all__ = sorted(_LAZY) + ["Predictor", "predict"]


def __getattr__(name):
    if name in _LAZY:
        from kapps.process import import_tensorflow

        import_tensorflow()  # before Keras loads it, so its C++ start-up chatter stays hidden
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'retrain' has no attribute {name!r}")
