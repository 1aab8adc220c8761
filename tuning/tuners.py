"""The four tuners: keras-tuner's own, plus kapps' per-trial hooks.

Each class pairs a keras-tuner tuner with `KappsTunerMixin`, which adds what a
kapps search needs around keras-tuner's loop: seeding each trial from the seed and
its trial number, timing trials, the progress line, the results table after every
trial, and stopping before a trial that would not fit in the time budget.
keras-tuner itself does the searching, the saving and the resuming: a project
reloaded with `overwrite=False` skips finished trials and reruns the one that was
cut off.
"""
import gc
import time

import keras_tuner
import numpy as np

from kapps.errors import UserError
from tuning import kt_internals, results
from tuning.hypermodel import SearchStopped


class _OutOfTime(Exception):
    """Raised before a trial that the time budget has no room for."""


class _ProcessFull(Exception):
    """Raised before a trial when this process has run its share (`trial_cap`)."""


class KappsTunerMixin(kt_internals.DeclaredSpaceMixin):
    """Hooks shared by every kapps tuner.

    Args:
        progress: a `tuning.progress.Progress`, or None for silence.
        time_budget: seconds this `search()` call may take; a trial is not started when
            the mean trial time exceeds what is left. None: no limit.
        write_results: write `trials.csv` and `trials.json` after each trial. Defaults to `True`.
        trial_cap: most trials this process runs before `search()` returns with
            `stopped_by_cap` set (a fresh process then resumes). None: no limit.
    """

    clock = staticmethod(time.monotonic)  # replaceable, for tests of the time budget

    def __init__(self, *args, progress=None, time_budget=None, write_results=True,
                 trial_cap=None, **kwargs):
        self.progress = progress
        self.time_budget = time_budget
        self.write_results = write_results
        self.trial_cap = trial_cap
        self.stopped_by_budget = False
        self.stopped_by_cap = False
        self._durations = []
        self._search_start = None
        self._trial_start = None
        super().__init__(*args, **kwargs)

    def search(self, *args, **kwargs):
        """keras-tuner's search; returns normally when the time budget runs out.

        keras-tuner runs two full garbage collections before each trial's build; over
        TensorFlow's and Keras' own objects they took 0.2 s each (a fifth of a head
        trial on the digits). What exists when the search starts is frozen out of them
        (`gc.freeze`) for the search: what a trial leaves is still collected.
        """
        self._search_start = self.clock()
        self.stopped_by_budget = self.stopped_by_cap = False
        gc.freeze()
        try:
            super().search(*args, **kwargs)
        except _OutOfTime:
            self.stopped_by_budget = True
        except _ProcessFull:
            self.stopped_by_cap = not self._all_trials_ended()
        finally:
            gc.unfreeze()

    def _all_trials_ended(self):
        """True when as many trials ended as the search will run (when that is known)."""
        total = expected_trials(self)
        ended = [t for t in self.oracle.trials.values() if t.status != "RUNNING"]
        return total is not None and len(ended) >= total

    def mean_trial_seconds(self):
        """Mean measured trial time: this run's trials, else the project's earlier ones."""
        times = list(self._durations)
        if not times and not self.is_worker:
            times = [s for s in map(results.trial_seconds, self.oracle.trials.values())
                     if s is not None]
        return float(np.mean(times)) if times else None

    def pre_create_trial(self):
        super().pre_create_trial()
        if self.trial_cap is not None and len(self._durations) >= self.trial_cap:
            raise _ProcessFull
        if self.time_budget is None:
            return
        left = self.time_budget - (self.clock() - self._search_start)
        mean = self.mean_trial_seconds()
        if left <= 0 or (mean is not None and mean > left):
            raise _OutOfTime

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        if hasattr(self.hypermodel, "trial_number"):
            self.hypermodel.trial_number = int(trial.trial_id)
        self._trial_start = self.clock()

    def run_trial(self, trial, *args, **kwargs):
        # Report the trial's duration with its metrics: keras-tuner stores it in the
        # trial's own file, so it survives a resume and reaches a distributed chief.
        start = self.clock()
        try:
            outcome = super().run_trial(trial, *args, **kwargs)
        except SearchStopped:
            raise
        except UserError as err:  # every trial would fail alike: stop with the one line
            raise SearchStopped(str(err)) from None
        metrics = kt_internals.convert_to_metrics_dict(outcome, self.oracle.objective)
        metrics[results.SECONDS] = self.clock() - start
        return metrics

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        seconds = self.clock() - self._trial_start
        self._durations.append(seconds)
        if not self.is_worker and self.write_results:
            results.write_results(self.project_dir, self.oracle, plot=False)
        if self.progress is not None:
            ended = self.oracle.get_trial(trial.trial_id)
            best = results.best_trial(self.oracle)
            best = [] if best is None else [(best.score, results.trial_number(best.trial_id))]
            done = len(self.oracle.end_order) if not self.is_worker else int(trial.trial_id) + 1
            self.progress.report(int(trial.trial_id) + 1, ended.hyperparameters.values,
                                 ended.score, ended.status, best[0] if best else None,
                                 seconds, self.mean_trial_seconds(), done)


class RandomTuner(KappsTunerMixin, keras_tuner.RandomSearch):
    """Random search (`--tuner random`)."""


class GridTuner(KappsTunerMixin, keras_tuner.Tuner):
    """Every combination of the space's values (`--tuner grid`)."""

    def __init__(self, hypermodel=None, objective=None, max_trials=None, seed=None, **kwargs):
        oracle = kt_internals.ResumableGridOracle(objective=objective, max_trials=max_trials,
                                                  seed=seed)
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)


class HyperbandTuner(KappsTunerMixin, keras_tuner.Hyperband):
    """Hyperband (`--tuner hyperband`): many short trials, the best continued longer."""


class BayesianTuner(KappsTunerMixin, keras_tuner.Tuner):
    """Bayesian optimisation with a Gaussian process (`--tuner bayesian`)."""

    def __init__(self, hypermodel=None, objective=None, max_trials=10, num_initial_points=None,
                 seed=None, **kwargs):
        oracle = kt_internals.ReseededBayesianOracle(
            objective=objective, max_trials=max_trials, num_initial_points=num_initial_points,
            seed=seed)
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)


TUNERS = {"random": RandomTuner, "grid": GridTuner, "bayesian": BayesianTuner,
          "hyperband": HyperbandTuner}


def expected_trials(tuner):
    """How many trials the search will run (None if unknown): for the progress line."""
    oracle = tuner.oracle
    max_trials = oracle.max_trials
    if isinstance(tuner, GridTuner):
        return kt_internals.grid_size(oracle.get_space(), limit=max_trials)
    if isinstance(tuner, HyperbandTuner):
        total, hb = kt_internals.hyperband_trials(oracle)
        total *= hb.hyperband_iterations
        return min(total, max_trials) if max_trials else total
    return max_trials
