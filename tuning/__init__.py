"""tuning: hyperparameter search over retraining settings with keras-tuner.

`search(image_dir_or_config, tuner=..., space=...)` runs or resumes a search;
`RetrainHyperModel` is the keras-tuner `HyperModel` to subclass for custom searches.
"""
from kapps.process import import_tensorflow

import_tensorflow()  # first: TensorFlow loads with its C++ start-up chatter hidden

from tuning.hypermodel import RetrainHyperModel
from tuning.search import search
from tuning.space import SearchSpace, load_space

__all__ = ["RetrainHyperModel", "SearchSpace", "load_space", "search"]
