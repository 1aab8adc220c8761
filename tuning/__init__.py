"""tuning: hyperparameter search over retraining settings with keras-tuner.

`search(image_dir_or_config, tuner=..., space=...)` runs or resumes a search;
`RetrainHyperModel` is the keras-tuner `HyperModel` to subclass for custom searches.
They are imported on first use (TensorFlow first, with its C++ start-up chatter
hidden), so `kapps tune --help` does not pay for importing TensorFlow.
"""
import importlib
import sys
import types

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


class _Package(types.ModuleType):
    """Keeps `tuning.search` the function: importing the submodule of the same name
    binds it on the package, which would hide the function from then on."""

    def __setattr__(self, name, value):
        if not (name == "search" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
