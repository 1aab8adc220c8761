"""`RetrainHyperModel`: keras-tuner's view of a kapps retraining run.

A trial's hyperparameters become a `RetrainConfig` (`dataclasses.replace` of the base
config), and the trial builds and trains exactly what `kapps retrain` would with
that config. Data are prepared once per architecture and mode (head on cached
bottleneck features, or fine-tuning on pictures) and kept as numpy arrays across
trials, so a head search costs seconds per trial.

Subclass it to change the search: override `space(hp)` to declare more
hyperparameters (return `{config field: value}`), `build(hp)` or `fit(...)`.
"""
import dataclasses
import os

import keras
import keras_tuner

from kapps.errors import UserError
from tuning.space import SearchSpace, config_fields


class SearchStopped(keras_tuner.errors.FatalError, UserError):
    """A user mistake found inside a trial (a missing folder, a bad flag): every trial
    would fail the same way, so the search stops with the one-line message."""


class RetrainHyperModel(keras_tuner.HyperModel):
    """Builds and trains one retraining trial from keras-tuner's hyperparameters.

    Args:
        config: the base `RetrainConfig`; fields the space does not name keep its values.
        space: a `SearchSpace`. Defaults to an empty space (every trial is `config`).
        verbose: Keras `fit` verbosity inside trials. Defaults to `0`.
    """

    def __init__(self, config, space=None, verbose=0):
        super().__init__(name="retrain")
        self.config = config
        self.search_space = space or SearchSpace({})
        self.verbose = verbose
        # Set by the tuner before each trial: trials are seeded from seed + trial number.
        self.trial_number = 0
        self._prepared = {}

    def space(self, hp):
        """Declare the hyperparameters; returns `{config field: value}` for this trial."""
        return config_fields(self.search_space.declare(hp))

    def declare_hyperparameters(self, hp):
        self.space(hp)

    def trial_config(self, hp):
        """The resolved `RetrainConfig` of the trial `hp` describes."""
        from retrain.config import resolve
        from retrain.train.linear import keras_fit_reason
        overrides = self.space(hp)
        overrides["seed"] = self.config.seed + self.trial_number
        if self.config.head_fit == "auto" and self.search_space.searches_keras_fit():
            overrides["head_fit"] = "keras"
        config = dataclasses.replace(self.config, **overrides)
        if config.l2 is not None and (str(config.head_fit).lower() == "keras"
                                      or keras_fit_reason(config)):
            # l2 is the L-BFGS fit's one setting: a trial with a hidden layer or a
            # fine-tuned base is fitted by Keras and has none (`search` refuses a space
            # where no trial could use it).
            config = dataclasses.replace(config, l2=None)
        return resolve(config)

    def prepared(self, config):
        """Data for `config`, prepared once per (architecture, size, head or fine-tune)."""
        from retrain.data import decode_ahead
        from retrain.config import resolve
        from retrain.train.prepare import prepare_data
        head_only = config.fine_tune_layers() is None
        key = (config.architecture, config.image_size, head_only)
        if key not in self._prepared:
            base = dataclasses.replace(self.config, architecture=config.architecture,
                                       image_size=config.image_size,
                                       fine_tune="none" if head_only else config.fine_tune)
            self._prepared[key] = prepare_data(resolve(base), verbose=self.verbose)
            decode_ahead.stop()  # pictures decoded while TensorFlow started: used, freed
        return self._prepared[key]

    def build(self, hp):
        from retrain.train.fit import strategy_scope
        from retrain.train.model import build_model

        config = self.trial_config(hp)
        prepared = self.prepared(config)
        keras.utils.set_random_seed(config.seed)
        with strategy_scope(config):
            return build_model(prepared, config, fresh_base=True)

    def fit(self, hp, model, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        """Train `model` as `kapps retrain` would; returns the Keras `History`.

        Hyperband passes `epochs` (cumulative) and `initial_epoch` after loading the
        weights of the trial it continues, so only the difference is trained.
        """
        from retrain.train.fit import train
        config = self.trial_config(hp)
        if epochs is not None:
            config = dataclasses.replace(config, epochs=max(1, epochs - initial_epoch),
                                         how_many_training_steps=None)
        if config.summaries_dir:  # one TensorBoard run per trial, numbered as people read them
            config = dataclasses.replace(config, summaries_dir=os.path.join(
                config.summaries_dir, f"trial_{self.trial_number + 1:03d}"))
        history = train(model, self.prepared(config), config, callbacks=list(callbacks),
                        verbose=self.verbose)
        if getattr(history, "interrupted", False):
            # `train` keeps a Ctrl-C'd run as a result; a search must not score it.
            raise KeyboardInterrupt
        return history
