"""Every use of keras-tuner's private parts, in one place.

kapps relies on a few internals of keras-tuner 1.4 (private methods and modules under
`keras_tuner.src`) to resume grid and Bayesian searches exactly, to declare the search
space without building a model, and to count a search's trials. `setup.py` pins
keras-tuner to the range the tests cover (`SUPPORTED`), and
`tests/test_tuning.py::test_keras_tuner_internals_are_where_kapps_expects_them` fails
loudly, naming the missing part, if a release moves any of them.
"""
import functools

import keras_tuner
import numpy as np
from keras_tuner.src.distribute import utils as _dist_utils
from keras_tuner.src.engine import metrics_tracking as _metrics_tracking
from keras_tuner.src.engine import tuner_utils as _tuner_utils
from keras_tuner.src.tuners import bayesian as _bayesian
from keras_tuner.src.tuners import gridsearch as _gridsearch

# The keras-tuner releases these internals were checked against (also in setup.py).
SUPPORTED = ">=1.4.7,<1.5"

# (object, attribute) pairs kapps uses; the test checks every one exists.
USED = (
    (keras_tuner.Tuner, "_populate_initial_space"), (keras_tuner.Tuner, "_is_worker"),
    (_gridsearch.GridSearchOracle, "_compare"),
    (_gridsearch.GridSearchOracle, "_get_next_combination"), (_gridsearch, "LinkedList"),
    (keras_tuner.oracles.HyperbandOracle, "_get_num_brackets"),
    (keras_tuner.oracles.HyperbandOracle, "_get_size"),
    (_tuner_utils, "convert_to_metrics_dict"), (_metrics_tracking, "infer_metric_direction"),
    (_dist_utils, "has_chief_oracle"), (_dist_utils, "is_chief_oracle"),
)

convert_to_metrics_dict = _tuner_utils.convert_to_metrics_dict
infer_metric_direction = _metrics_tracking.infer_metric_direction
has_chief_oracle = _dist_utils.has_chief_oracle
is_chief_oracle = _dist_utils.is_chief_oracle


class DeclaredSpaceMixin:
    """Discover the search space from the hypermodel's `space(hp)` when it has one.

    keras-tuner discovers the space, conditional entries included, by building models;
    `space(hp)` declares the same entries without preparing data or loading a backbone
    (a chief that never trains would otherwise do both).
    """

    def _populate_initial_space(self):
        space = getattr(self.hypermodel, "space", None)
        if space is None:
            return super()._populate_initial_space()
        build = self.hypermodel.build
        self.hypermodel.build = space
        try:
            super()._populate_initial_space()
        finally:
            self.hypermodel.build = build

    @property
    def is_worker(self):
        return self._is_worker()


class ReseededBayesianOracle(_bayesian.BayesianOptimizationOracle):
    """keras-tuner's Bayesian oracle, drawing each trial's restarts from seed + trial number.

    The stock oracle keeps one `RandomState` that a reloaded project recreates from
    the seed, and fits its Gaussian process to the trials in the order a reload found
    their files, so a resumed search would propose other trials than an uninterrupted
    one.
    """

    def set_state(self, state):
        super().set_state(state)
        self.trials = dict(sorted(self.trials.items(), key=lambda item: int(item[0])))

    def populate_space(self, trial_id):
        self._random_state = np.random.RandomState(self.seed + int(trial_id))
        return super().populate_space(trial_id)


class ResumableGridOracle(_gridsearch.GridSearchOracle):
    """keras-tuner's grid oracle, able to resume.

    keras-tuner 1.4.8 does not save which combinations follow which, so a reloaded grid
    fails with a KeyError on its next trial. The order is a function of the trials'
    values, so it is rebuilt from them; the next combinations come out exactly as in
    an uninterrupted search.
    """

    def set_state(self, state):
        super().set_state(state)
        self._ordered_ids = _gridsearch.LinkedList()
        by_values = functools.cmp_to_key(lambda a, b: self._compare(
            self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values))
        for trial_id in sorted(self.start_order, key=by_values):
            self._ordered_ids.insert(trial_id)
        # Finished trials whose next combination was already tried are skipped.
        self._populate_next = list(self.start_order)


def hyperband_trials(oracle):
    """Trials one pass of Hyperband's schedule runs (before `hyperband_iterations`)."""
    hb = oracle if isinstance(oracle, keras_tuner.oracles.HyperbandOracle) else oracle._oracle
    n = hb._get_num_brackets()
    return sum(hb._get_size(b, r) for b in range(n) for r in range(b + 1)), hb


def grid_size(space, limit=None, cap=100000):
    """Count the grid by walking keras-tuner's own enumeration order."""
    walker = _gridsearch.GridSearchOracle(hyperparameters=space)
    values = {hp.name: hp.default for hp in space.space if space.is_active(hp)}
    count = 1
    while count < (limit or cap):
        values = walker._get_next_combination(values)
        if values is None:
            break
        count += 1
    return count
