"""`search()`: one call from a retraining config to a finished (or resumed) search.

It checks the space, builds the hypermodel and the tuner, refuses to resume a
project that was started with other settings, runs keras-tuner's search (in fresh
processes of a few trials each, see `tuning.processes`), writes the results table,
and optionally retrains the best settings on train+validation and exports the model
like `kapps retrain`.
"""
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import sys

import keras_tuner

from kapps.errors import UserError
from kapps.process import start_devices
from retrain.common import atomic
from retrain.config import resolve, weights_note
from retrain.data.dataset import check_image_folder
from retrain.train.cluster import uses_strategy
from tuning import kt_internals, processes, results
from tuning.hypermodel import RetrainHyperModel
from tuning.progress import Progress, parse_duration
from tuning.space import load_space
from tuning.tuners import TUNERS, expected_trials

from tuning.defaults import (DEFAULT_DIRECTORY, DEFAULT_MAX_TRIALS, DEFAULT_TRIALS_PER_PROCESS,
                             fits_one_process)
SETTINGS_FILE = "kapps_search.json"
# Config fields that do not change a trial's result: they may differ on resume.
_NOT_SETTINGS = {"output_dir", "output_graph", "output_labels", "bottleneck_dir", "model_dir",
                 "summaries_dir", "assert_accuracy_at_least",
                 "verbose", "print_misclassified_test_images", "distribute", "demo",
                 "saved_model_dir", "tflite_output_file", "onnx_output_file",
                 "runtime", "worker_timeout", "backup_dir"}  # runtime: features agree within 1e-4


def objective_from(text):
    """`val_accuracy`, `val_loss`, or `NAME:max` / `NAME:min` for a metric keras-tuner
    cannot infer a direction for."""
    name, _, direction = str(text).partition(":")
    direction = direction or kt_internals.infer_metric_direction(name)
    if direction not in ("max", "min"):
        raise UserError(f"--objective {text}: cannot tell whether to maximize or minimize "
                        f"{name!r}; write {name}:max or {name}:min.")
    return keras_tuner.Objective(name, direction)


def base_config(config_or_image_dir, overrides):
    """A `RetrainConfig` from a config or an image folder, with keyword overrides checked."""
    if dataclasses.is_dataclass(config_or_image_dir):
        config = config_or_image_dir
    else:
        from retrain.config import RetrainConfig
        config = RetrainConfig(image_dir=os.fspath(config_or_image_dir))
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"Unrecognized arguments {unknown} for `tuning.search()`; config "
                        f"fields are: {', '.join(sorted(names))}.")
    return dataclasses.replace(config, **overrides)


def pictures_digest(image_dir, testing_percentage, validation_percentage):
    """sha1 of every picture's (path in the folder, content digest, split): what the
    trials' data depend on. Any picture added, removed, changed or moved to another
    split changes it; reading the files is far cheaper than the trials it protects."""
    from retrain.data.images import file_digest, list_image_files
    from retrain.data.split import which_split

    rows = []
    for path in list_image_files(image_dir):
        rel = os.path.relpath(path, image_dir).replace(os.sep, "/")
        within = rel.partition("/")[2]
        if within:  # a picture directly in image_dir belongs to no class
            rows.append((rel, file_digest(path),
                         which_split(within, testing_percentage, validation_percentage)))
    return hashlib.sha1(json.dumps(rows).encode("utf-8")).hexdigest()


# What a project's trials depend on beyond its settings, and how to name it on a change.
_DEPENDS = {"pictures": "the pictures in --image_dir (content, files or split)",
            "weights_file": "the content of the --weights file"}


def depends(config):
    """Digests of the content the trials were trained on: the picture folder and split,
    and the weights file (a registry file or an earlier kapps export) if one is given."""
    from retrain.data.images import file_digest

    weights = str(getattr(config, "weights", ""))
    return {"pictures": pictures_digest(config.image_dir, config.testing_percentage,
                                        config.validation_percentage),
            "weights_file": file_digest(weights) if os.path.isfile(weights) else None}


def _settings(tuner, objective, space, config, content=None):
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_SETTINGS}
    if fields.get("image_dir"):
        fields["image_dir"] = os.path.abspath(fields["image_dir"])
    return {"tuner": tuner, "objective": f"{objective.name}:{objective.direction}",
            "space": space.to_json(), "config": fields,
            "depends": content if content is not None else depends(config)}


def _check_settings(project_dir, settings, overwrite):
    """Resuming with other settings or on other data would mix two searches in one
    table, and keep scores earned on something else: refuse."""
    path = os.path.join(project_dir, SETTINGS_FILE)
    if not overwrite and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        new = json.loads(json.dumps(settings, default=str))
        changed = [k for k in ("tuner", "objective", "space") if old.get(k) != new[k]]
        changed += [f"config.{k}" for k, v in new["config"].items()
                    if old.get("config", {}).get(k) != v]
        changed += [_DEPENDS[k] for k, v in new["depends"].items()
                    if old.get("depends", {}).get(k) != v]
        if changed:
            raise UserError(
                f"{project_dir} holds a search started with other settings or data "
                f"(changed: {', '.join(changed)}), so its trials' scores do not hold now. "
                f"Pass --overwrite to start it again, or choose another --project_name "
                f"(or rerun with what it was started with to resume it).")


def search(config_or_image_dir, tuner="random", space=None, *, max_trials=None,
           objective="val_accuracy", directory=DEFAULT_DIRECTORY, project_name=None,
           overwrite=False, time_budget=None, export_best=None, hypermodel=None,
           trials_per_process=DEFAULT_TRIALS_PER_PROCESS, verbose=1, fit_verbose=0,
           summaries=False, **config_overrides):
    """Run (or resume) a hyperparameter search over retraining settings.

    Args:
        config_or_image_dir: a `RetrainConfig`, or a folder with one sub-folder per class.
        tuner: `random`, `grid`, `bayesian` or `hyperband`. Defaults to `"random"`.
        space: a `SearchSpace`, a `{name: values}` dict, or a JSON/YAML file; `None`
            for the default space (see `tuning.space`).
        max_trials: most trials to run. Defaults to 10 for random and Bayesian, the
            whole grid for grid, and Hyperband's own schedule for hyperband.
        objective: metric to optimise, `NAME` or `NAME:max|min`. Defaults to
            `"val_accuracy"`.
        directory, project_name: where keras-tuner keeps the project; running the same
            search again resumes it. `project_name` defaults to `<tuner>_<architecture>`.
        overwrite: start the project afresh. Defaults to `False` (resume).
        time_budget: seconds or a string like `"30m"`; stop before a trial that would
            not fit. Defaults to no limit.
        export_best: folder to retrain the best settings on train+validation into and
            export, as `kapps retrain` does. Defaults to no export.
        hypermodel: a `RetrainHyperModel` subclass or instance. Defaults to
            `RetrainHyperModel`.
        trials_per_process: run the trials in fresh processes of at most this many
            trials each, so memory stays flat however long the search; `None` or 0 runs
            them all in this process, and so does a search of at most this many trials
            (`max_trials`). Defaults to 10. A hypermodel whose class another
            process cannot import (one defined in `__main__`), a distributed search and
            `distribute=True` (devices set up in this process) run in this process.
        verbose: print the per-trial progress line. Defaults to `1`.
        fit_verbose: Keras `fit` verbosity inside trials. Defaults to `0`.
        summaries: write TensorBoard logs of each trial to
            `<directory>/<project_name>/summaries/trial_NNN` (numbered from 1), and of
            the `export_best` training to `.../summaries/export`. Defaults to `False`.
        **config_overrides: `RetrainConfig` fields (`epochs=5`, `architecture=...`).

    Returns:
        `(tuner, rows)`: the keras-tuner tuner and the results table, one dict per trial
        (`trial` numbered from 1, `status`, `score`, `seconds`, then the hyperparameters). A
        distributed worker returns `rows=None`: the chief writes the table.
    """
    if tuner not in TUNERS:
        raise UserError(f"--tuner {tuner}: choose one of {', '.join(TUNERS)}.")
    # Quietly, first: keras-tuner's objective below makes a Keras metric, which starts
    # TensorFlow's devices with their CUDA probe lines.
    start_devices()
    config = base_config(config_or_image_dir, config_overrides)
    objective = objective_from(objective)
    budget = None if time_budget is None else parse_duration(time_budget)
    # Mistakes in flags or the folder stop here, before a project folder is made.
    note = weights_note(config, resolve(config))
    if note and verbose:
        print(note)
    check_image_folder(config.image_dir)
    space = load_space(space, tuner, getattr(config, "fine_tune", "none"))
    if space.searches_keras_fit() and ("l2" in space.entries or getattr(config, "l2", None) is not None):
        raise UserError(f"{space.source}: l2 sets the L-BFGS head fit, and this space varies "
                        "a setting only Keras' fit uses (learning_rate, optimizer, "
                        "batch_size, epochs, dropout or label_smoothing), so every trial "
                        "fits by Keras and none would use l2: search l2 alone, or drop it "
                        "(and --l2)")
    base_name = ("transfer" if str(getattr(config, "weights", "")).endswith(".keras")
                 else getattr(config, "architecture", "model"))
    project_name = project_name or f"{tuner}_{base_name}"
    if summaries:
        config = dataclasses.replace(
            config, summaries_dir=os.path.join(directory, project_name, "summaries"))
    if hypermodel is None or isinstance(hypermodel, type):
        hypermodel = (hypermodel or RetrainHyperModel)(config, space, verbose=fit_verbose)
    if max_trials is None and tuner in ("random", "bayesian"):
        max_trials = DEFAULT_MAX_TRIALS
    distributed = kt_internals.has_chief_oracle()
    settings = _settings(tuner, objective, space, config)
    if not distributed or kt_internals.is_chief_oracle():
        _check_settings(os.path.join(directory, project_name), settings, overwrite)
    job = dict(config=config, tuner=tuner, space=space, objective=objective,
               hypermodel=hypermodel, max_trials=max_trials, directory=directory,
               project_name=project_name, overwrite=overwrite, budget=budget,
               verbose=verbose, settings=settings)
    if (not fits_one_process(tuner, max_trials, trials_per_process) and not distributed
            and not uses_strategy(config) and processes.portable(hypermodel)):
        stopped_by_budget = processes.run_in_processes(job, trials_per_process)
        # The project is complete on disk: load it here without running a trial (and
        # without keras-tuner's "Reloading Tuner" line, which the children printed).
        with contextlib.redirect_stdout(io.StringIO()):
            kt_tuner, rows = run_search(**dict(job, overwrite=False, budget=None, trial_cap=0,
                                               verbose=0))
        kt_tuner.stopped_by_budget = stopped_by_budget
    else:
        kt_tuner, rows = run_search(**job)
    if verbose and kt_tuner.stopped_by_budget:
        print(f"time budget {time_budget}: stopped before a trial that would not fit; run "
              f"the same command again to continue.")
    if verbose and rows is not None:
        best = results.trial_number(results.best_trial_id(kt_tuner.oracle))
        print(f"results: {os.path.join(kt_tuner.project_dir, 'trials.csv')}"
              + (f" (best: trial {best})" if best is not None else ""))
    if export_best and not kt_tuner.is_worker:  # distributed: the chief exports, once
        best = results.trial_number(results.best_trial_id(kt_tuner.oracle))
        if verbose and best is not None:  # with none, best_config says so
            print(f"exporting the best settings (trial {best}), retrained on train+validation, "
                  f"to {export_best}")
        export_best_model(kt_tuner, export_best)
    return kt_tuner, rows


def run_search(config, tuner, space, objective, hypermodel, max_trials, directory,
               project_name, overwrite, budget, verbose, trial_cap=None, announce=True,
               settings=None):
    """Build the keras-tuner tuner and run its search in this process (at most
    `trial_cap` trials); returns `(tuner, rows)`. `search()` checks the arguments and
    passes the `settings` it checked, which are recorded in the project."""
    writes_project = not kt_internals.has_chief_oracle() or kt_internals.is_chief_oracle()
    kwargs = dict(hypermodel=hypermodel, objective=objective, seed=_oracle_seed(config),
                  directory=directory, project_name=project_name, overwrite=overwrite,
                  time_budget=budget, trial_cap=trial_cap)
    if tuner == "hyperband":
        kwargs["max_epochs"] = config.epochs
    else:
        kwargs["max_trials"] = max_trials
    with _without_reloading_line():
        kt_tuner = TUNERS[tuner](**kwargs)
    if tuner == "hyperband" and max_trials:
        kt_tuner.oracle.max_trials = max_trials  # Hyperband's oracle honours the base cap
    if writes_project:
        atomic.write_json(os.path.join(kt_tuner.project_dir, SETTINGS_FILE),
                          settings or _settings(tuner, objective, space, config))
    if verbose:
        kt_tuner.progress = Progress(expected_trials(kt_tuner), objective.name)
        if announce:
            _announce(kt_tuner, tuner)
    rows = None
    try:
        kt_tuner.search(verbose=0)
    finally:
        if not kt_tuner.is_worker:
            rows = results.write_results(kt_tuner.project_dir, kt_tuner.oracle)
    return kt_tuner, rows


@contextlib.contextmanager
def _without_reloading_line():
    """keras-tuner prints "Reloading Tuner from PATH" when it resumes a project; kapps
    says it on its own line ("resuming ..."), so that one line is left out and anything
    else printed is passed on."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        lines = captured.getvalue().splitlines(keepends=True)
        sys.stdout.write("".join(line for line in lines
                                 if not line.startswith("Reloading Tuner from ")))


def _oracle_seed(config):
    # keras-tuner replaces a seed of 0 (falsy) by a random one; shift to keep it fixed.
    return getattr(config, "seed", 0) + 1


def _announce(tuner, name):
    if tuner.is_worker:
        print(f"worker {tuner.tuner_id}: taking trials from the chief")
        return
    finished = [t for t in tuner.oracle.trials.values() if t.status != "RUNNING"]
    total = tuner.progress.total if tuner.progress else None
    if finished:
        print(f"resuming {tuner.project_dir}: {len(finished)} trials finished earlier")
    print(f"{name} search: {total if total else 'unknown number of'} trials, objective "
          f"{tuner.oracle.objective.name} ({tuner.oracle.objective.direction})")


def best_config(tuner):
    """The resolved config of the best finished trial."""
    trial = results.best_trial(tuner.oracle)
    if trial is None:
        raise UserError(f"{tuner.project_dir}: no trial finished, so there is no best model "
                        f"to export.")
    hypermodel = tuner.hypermodel
    hypermodel.trial_number = int(trial.trial_id)
    config = hypermodel.trial_config(trial.hyperparameters.copy())
    if "tuner/epochs" in trial.hyperparameters.values:
        config = dataclasses.replace(config, epochs=trial.hyperparameters.values["tuner/epochs"])
    return config


def export_best_model(tuner, output_dir):
    """Retrain the best settings on train+validation and export them to `output_dir`."""
    from retrain.job import retrain
    config = dataclasses.replace(best_config(tuner), train_on_validation=True,
                                 output_dir=os.fspath(output_dir))
    if config.summaries_dir:
        config = dataclasses.replace(config, summaries_dir=os.path.join(config.summaries_dir,
                                                                        "export"))
    return retrain(config)
