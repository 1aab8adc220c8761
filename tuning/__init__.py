"""tuning: hyperparameter search over retraining settings with keras-tuner.

`search(image_dir_or_config, tuner=..., space=...)` runs or resumes a search;
`RetrainHyperModel` is the keras-tuner `HyperModel` to subclass for custom searches.
They are imported on first use (TensorFlow first, with its C++ start-up chatter
hidden), so `kapps tune --help` does not pay for importing TensorFlow.
"""
import importlib

_LAZY = {
    "RetrainHyperModel": "tuning.hypermodel",
    "search": "tuning.search",
    "SearchSpace": "tuning.space",
    "load_space": "tuning.space",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tuning' has no attribute {name!r}")
    from kapps.process import import_tensorflow

    import_tensorflow()
    return getattr(importlib.import_module(_LAZY[name]), name)
