"""Search logic with training stubbed out: trial counts, resume, time budget, space files.

`StubHyperModel.fit` returns a score computed from the trial's settings and its seed
instead of training, as keras-tuner's own tests do, so each search takes a second or
two and the counts and orders asserted are keras-tuner's real behaviour.
"""
import os
import csv
import gc
import json
from pathlib import Path
import re
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import imagegen
import tuning
from retrain.config import RetrainConfig
from kapps.errors import UserError
from tuning import RetrainHyperModel, SearchSpace, load_space
from tuning.cli_tune import main as cli_main
from tuning.progress import Progress, format_duration, parse_duration
from tuning.space import config_fields
from tuning.tuners import KappsTunerMixin, expected_trials

# The stubbed trials never read pictures; search() only checks the folder exists.
STUB_IMAGE_DIR = os.path.dirname(os.path.abspath(__file__))

GRID = {"learning_rate": [0.001, 0.01, 0.1], "dropout": [0.0, 0.5], "optimizer": ["adam", "sgd"]}


class StubHyperModel(RetrainHyperModel):
    """Scores a trial without training; records every trial it runs.

    The score prefers learning_rate 0.01, dropout 0.5 and adam, and adds a little noise
    drawn from the trial's seed (seed + trial number), so a trial re-run with another
    seed would score differently.
    """

    runs = []
    stop_at = None  # trial number whose start raises KeyboardInterrupt (a Ctrl-C)
    kill_at = None  # trial number whose start kills the process (kill -9: nothing cleans up)

    def build(self, hp):
        self.space(hp)
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    def fit(self, hp, model, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        if self.trial_number == type(self).stop_at:
            raise KeyboardInterrupt
        if self.trial_number == type(self).kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        type(self).runs.append(self.trial_number)
        fields = self.space(hp)
        noise = np.random.default_rng(self.config.seed + self.trial_number).uniform(0, 0.01)
        score = (1.0 - abs(np.log10(fields.get("learning_rate", 0.01)) + 2) / 3
                 + fields.get("dropout", 0.0) / 5 + (fields.get("optimizer") == "adam") / 10
                 + (epochs or 1) / 100 + noise)
        for callback in callbacks:  # what keras would do: lets Hyperband load checkpoints
            callback.set_model(model)
            callback.on_epoch_end(0, {"val_accuracy": score})
        return {"val_accuracy": score}


@pytest.fixture(autouse=True)
def fast_and_fresh(monkeypatch):
    # keras-tuner runs gc.collect() twice per trial (about 0.4 s each here); the stub
    # keeps no memory worth collecting. Memory across real trials is measured in
    # bench/bench_tuning.py.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    StubHyperModel.runs = []
    StubHyperModel.stop_at = None


def config(**overrides):
    return RetrainConfig(image_dir=STUB_IMAGE_DIR, architecture="lenet5", **overrides)


class BrokenHyperModel(StubHyperModel):
    def fit(self, *args, **kwargs):
        raise UserError("--weights w.h5: no such file")


def run(tmp_path, tuner="grid", space=GRID, **kwargs):
    """A stubbed search; its trials run in this process unless `trials_per_process` is given."""
    kwargs.setdefault("directory", str(tmp_path / "runs"))
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("hypermodel", StubHyperModel)
    kwargs.setdefault("trials_per_process", None)
    return tuning.search(config(), tuner, space, **kwargs)


def key(row):
    return tuple(sorted((k, v) for k, v in row.items() if k not in ("seconds",)))


def test_grid_runs_every_combination_once(tmp_path):
    tuner, rows = run(tmp_path)
    assert len(rows) == 12 == expected_trials(tuner)
    combos = {(r["learning_rate"], r["dropout"], r["optimizer"]) for r in rows}
    assert len(combos) == 12 and all(r["status"] == "COMPLETED" for r in rows)
    assert sorted(StubHyperModel.runs) == list(range(12))
    best = max(rows, key=lambda r: r["score"])
    assert (best["learning_rate"], best["dropout"], best["optimizer"]) == (0.01, 0.5, "adam")

    project = tmp_path / "runs" / "grid_lenet5"
    table = list(csv.DictReader(open(project / "trials.csv", encoding="utf-8")))
    assert len(table) == 12 and {"trial", "status", "score", "seconds", "learning_rate",
                                 "dropout", "optimizer"} <= set(table[0])
    saved = json.loads((project / "trials.json").read_text("utf-8"))
    assert saved["best_trial"] == best["trial"] and len(saved["trials"]) == 12
    # Numbered from 1, as the console's "trial 1/12" (keras-tuner's own ids count from 0).
    assert [int(r["trial"]) for r in table] == list(range(1, 13))
    assert (project / "trials.png").stat().st_size > 1000


def test_conditional_hidden_layer_grid_counts_its_width_only_when_on(tmp_path):
    space = {"hidden_layer": [False, True], "hidden_units": [32, 64], "dropout": [0.0, 0.5]}
    tuner, rows = run(tmp_path, space=space)
    assert len(rows) == (1 + 2) * 2 == expected_trials(tuner)
    assert all(isinstance(r["hidden_layer"], bool) for r in rows)
    off = [r for r in rows if not r["hidden_layer"]]
    assert len(off) == 2 and all("hidden_units" not in r for r in off)
    assert config_fields({"hidden_layer": False, "hidden_units": 64}) == {"hidden_units": 0}
    assert config_fields({"hidden_layer": True, "hidden_units": 64}) == {"hidden_units": 64}


def test_random_runs_max_trials(tmp_path):
    space = {"learning_rate": {"min": 1e-4, "max": 1e-1, "sampling": "log"}}
    _, rows = run(tmp_path, "random", space, max_trials=5)
    assert len(rows) == 5 and all(r["status"] == "COMPLETED" for r in rows)
    rates = [r["learning_rate"] for r in rows]
    assert len(set(rates)) == 5 and all(1e-4 <= x <= 1e-1 for x in rates)


def test_hyperband_continues_the_best_trials_for_more_epochs(tmp_path):
    tuner, rows = run(tmp_path, "hyperband", {"learning_rate": [0.001, 0.01, 0.1, 1.0],
                                              "optimizer": ["adam", "sgd"]}, epochs=3)
    assert len(rows) == expected_trials(tuner) == 6
    assert all(r["status"] == "COMPLETED" for r in rows)
    continued = [r for r in rows if r.get("continues_trial")]
    assert continued and all(r["tuner/epochs"] == 3 and r["tuner/initial_epoch"] == 1
                             for r in continued)
    assert all(1 <= r["continues_trial"] < r["trial"] for r in continued)


@pytest.mark.parametrize("tuner,space,limit,stop_at", [
    ("grid", GRID, None, 4),
    ("random", {"learning_rate": {"min": 1e-4, "max": 1e-1, "sampling": "log"},
                "optimizer": ["adam", "sgd", "rmsprop"]}, 6, 4),
    # One dimension: 3 random trials, then the Gaussian process proposes trials 3 and 4.
    ("bayesian", {"learning_rate": {"min": 1e-4, "max": 1e-1, "sampling": "log"}}, 5, 3),
    ("hyperband", {"learning_rate": [0.001, 0.01, 0.1, 1.0], "optimizer": ["adam", "sgd"]},
     None, 4),
])
def test_resume_after_ctrl_c_reruns_no_finished_trial_and_ends_as_uninterrupted(
        tmp_path, tuner, space, limit, stop_at):
    tuner_, reference = run(tmp_path, tuner, space, max_trials=limit, epochs=3,
                            directory=str(tmp_path / "a"))
    assert len(reference) == (limit or expected_trials(tuner_))  # bayesian: max_trials too
    assert all(r["status"] == "COMPLETED" for r in reference)
    StubHyperModel.runs = []

    StubHyperModel.stop_at = stop_at
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, tuner, space, max_trials=limit, epochs=3, directory=str(tmp_path / "b"))
    assert StubHyperModel.runs == list(range(stop_at))
    table = list(csv.DictReader(open(tmp_path / "b" / f"{tuner}_lenet5" / "trials.csv")))
    assert [r["status"] for r in table] == ["COMPLETED"] * stop_at + ["RUNNING"]

    StubHyperModel.stop_at = None
    _, resumed = run(tmp_path, tuner, space, max_trials=limit, epochs=3,
                     directory=str(tmp_path / "b"))
    assert StubHyperModel.runs == list(range(len(reference)))  # 4 onwards, each once
    assert [key(r) for r in resumed] == [key(r) for r in reference]


# A search in a subprocess, killed with SIGKILL as trial 3 starts (trials 0-2 finished).
KILLED_SEARCH = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_tuning
test_tuning.StubHyperModel.kill_at = 3
test_tuning.run(Path(sys.argv[2]), "random", test_tuning.GRID, max_trials=6)
"""


def test_a_search_killed_between_trials_resumes_where_it_stopped(tmp_path):
    """kill -9 leaves no chance to save anything: the same search again reruns no
    finished trial and ends as an uninterrupted one."""
    _, reference = run(tmp_path / "plain", "random", GRID, max_trials=6)
    StubHyperModel.runs = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    killed = subprocess.run([sys.executable, "-c", KILLED_SEARCH, os.path.dirname(__file__),
                             str(tmp_path / "killed")], env=env, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _, resumed = run(tmp_path / "killed", "random", GRID, max_trials=6)
    assert StubHyperModel.runs == [3, 4, 5]
    assert [key(r) for r in resumed] == [key(r) for r in reference]


def test_resume_with_other_settings_is_refused(tmp_path):
    run(tmp_path, max_trials=2)
    with pytest.raises(UserError, match="other settings.*space.*--overwrite"):
        run(tmp_path, space={"dropout": [0.0, 0.5]})
    _, rows = run(tmp_path, space={"dropout": [0.0, 0.5]}, overwrite=True)
    assert len(rows) == 2


def test_resume_on_changed_pictures_or_weights_is_refused(tmp_path):
    """Trials scored on other pictures or another weights file (a model retrained at the
    same path) must not be resumed, kept and exported as if they were still valid."""
    import imagegen

    pictures = imagegen.make_class_folder(tmp_path / "pictures", {"a": 3, "b": 3}, size=8)
    weights = imagegen.write_bytes(tmp_path / "base.weights.h5", b"first model")
    settings = dict(image_dir=pictures, weights=weights, max_trials=2)
    assert len(run(tmp_path, **settings)[1]) == 2
    assert len(run(tmp_path, **settings)[1]) == 2  # unchanged: resumed, nothing to add
    imagegen.write_image(tmp_path / "pictures" / "a" / "a_000.png", (0, 0, 0), size=8)
    with pytest.raises(UserError, match=r"changed: the pictures in --image_dir .*"
                                        r"--overwrite.*--project_name"):
        run(tmp_path, **settings)
    run(tmp_path, overwrite=True, **settings)
    imagegen.write_bytes(weights, b"a model retrained at the same path")
    with pytest.raises(UserError, match=r"changed: the content of the --weights file"):
        run(tmp_path, **settings)
    assert len(run(tmp_path, project_name="other", **settings)[1]) == 2


def test_time_budget_stops_before_a_trial_that_would_not_fit(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(KappsTunerMixin, "clock", staticmethod(lambda: clock[0]))
    original = StubHyperModel.fit

    def slow_fit(self, *args, **kwargs):
        clock[0] += 10.0  # every trial takes 10 "seconds"
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StubHyperModel, "fit", slow_fit)
    tuner, rows = run(tmp_path, time_budget="35s")
    # After 3 trials 5 s are left and a trial takes 10 s: stop cleanly, table written.
    assert len(rows) == 3 and tuner.stopped_by_budget
    assert all(r["status"] == "COMPLETED" and r["seconds"] == 10.0 for r in rows)
    _, rows = run(tmp_path, time_budget="1m")
    assert len(rows) == 3 + 6 and sorted(StubHyperModel.runs) == list(range(9))


def test_progress_line_shows_count_values_score_best_and_eta(tmp_path, capsys):
    run(tmp_path, space={"dropout": [0.0, 0.5], "optimizer": ["adam", "sgd"]}, verbose=1)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("trial ")]
    assert len(lines) == 4
    assert re.match(r"trial 1/4 optimizer=adam dropout=0 \| val_accuracy 1\.1\d+ \| "
                    r"best 1\.1\d+ \(trial 1\) \| \d+\.\ds, ETA \d", lines[0]), lines[0]
    assert "best " in lines[1] and "ETA" in lines[2] and lines[3].endswith("done")
    line = Progress(10, "val_loss").line(3, {"learning_rate": 0.0123456, "tuner/round": 0},
                                         0.5, "COMPLETED", (0.25, 2), 3.0, 2.0, 3)
    assert line == ("trial 3/10 learning_rate=0.01235 | val_loss 0.5000 | best 0.2500 (trial 2)"
                    " | 3.0s, ETA 14.0s")


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("30m") == 1800
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45 and parse_duration(12.5) == 12.5
    for bad in ("3x", "m", "0s", "-5", "1h 30"):
        with pytest.raises(UserError, match="--time_budget"):
            parse_duration(bad)
    assert format_duration(5.25) == "5.2s" and format_duration(245) == "4m05s"
    assert format_duration(7380) == "2h03m"


# --- search-space files ------------------------------------------------------------------

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_space_file_json_and_yaml_give_the_same_space(tmp_path):
    from_json = SearchSpace.from_file(write(tmp_path, "s.json", json.dumps(
        {"learning_rate": {"min": 0.0001, "max": 0.1, "sampling": "log"},
         "dropout": [0, 0.5], "batch_size": 16})))
    from_yaml = SearchSpace.from_file(write(tmp_path, "s.yaml", (
        "learning_rate: {min: 0.0001, max: 0.1, sampling: log}\n"
        "dropout: [0, 0.5]\nbatch_size: 16\n")))
    assert from_json.to_json() == from_yaml.to_json() == {
        "learning_rate": {"min": 0.0001, "max": 0.1, "sampling": "log"},
        "batch_size": 16, "dropout": [0.0, 0.5]}


@pytest.mark.parametrize("text,message", [
    ('{"learnin_rate": [0.1]}', "unknown hyperparameter 'learnin_rate'"),
    ('{"dropout": "high"}', "entry 'dropout': 'high' is not a number in \\[0, 1\\)"),
    ('{"dropout": [0.1, 1.5]}', "entry 'dropout': 1.5 is not a number in \\[0, 1\\)"),
    ('{"optimizer": ["adam", "nadam"]}',
     "entry 'optimizer': 'nadam' is not a known optimizer \\(adam, sgd, rmsprop\\)\\.$"),
    ('{"batch_size": [16, 2.5]}', "entry 'batch_size': 2.5 is not an integer >= 1"),
    ('{"learning_rate": {"min": 0.1, "max": 0.01}}', "entry 'learning_rate': min 0.1 is "
                                                      "greater than max 0.01"),
    ('{"learning_rate": {"min": 0, "max": 0.1, "sampling": "log"}}', "entry 'learning_rate'"),
    ('{"learning_rate": {"min": 0.001, "max": 0.1, "step": 0.5, "sampling": "log"}}',
     "entry 'learning_rate': with log sampling the step multiplies"),
    ('{"optimizer": {"min": 1, "max": 2}}', "entry 'optimizer': a range needs a numeric"),
    ('{"dropout": {"low": 0, "max": 0.5}}', "entry 'dropout': a range is"),
    ('{"dropout": []}', "entry 'dropout': the list of values is empty"),
    ('{"dropout": [0.1, 0.1]}', "entry 'dropout': the list \\[0.1, 0.1\\] repeats"),
    ('{"architecture": ["lenet5", "nonet"]}', "entry 'architecture': 'nonet' is not"),
    ('["dropout"]', "expected a mapping"),
    ('{"dropout": [0.1, 0.2}', ", line 1: not valid JSON"),
])
def test_bad_space_file_names_the_file_and_the_entry(tmp_path, text, message):
    path = write(tmp_path, "space.json", text)
    with pytest.raises(UserError, match=message) as err:
        SearchSpace.from_file(path)
    assert str(err.value).startswith(f"--space {path}") and "\n" not in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path):
    path = write(tmp_path, "space.yml", "optimizer: [adam]\ndropout: [0.1\nepochs: [2]\n")
    with pytest.raises(UserError, match=f"--space {path}, line [34]: not valid YAML") as err:
        SearchSpace.from_file(path)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="cannot read it"):
        SearchSpace.from_file(str(tmp_path / "nope.json"))


def test_grid_refuses_a_continuous_range_and_names_it(tmp_path):
    path = write(tmp_path, "space.json", json.dumps(
        {"dropout": [0.0, 0.5], "learning_rate": {"min": 1e-4, "max": 1e-1, "sampling": "log"}}))
    with pytest.raises(UserError, match="entry 'learning_rate' is a continuous range"):
        load_space(path, tuner="grid")
    assert load_space(path, tuner="random").entries["learning_rate"].sampling == "log"
    stepped = load_space({"learning_rate": {"min": 1e-4, "max": 1e-1, "step": 10,
                                            "sampling": "log"},
                          "batch_size": {"min": 8, "max": 32, "step": 8}}, tuner="grid")
    assert set(stepped.entries) == {"learning_rate", "batch_size"}


def test_default_spaces():
    assert "learning_rate" in load_space(None, "random").entries
    grid = load_space(None, "grid")
    assert all(isinstance(e, tuning.space.Choice) for e in grid.entries.values())
    fine = load_space(None, "random", fine_tune="top:20")
    assert fine.entries["fine_tune_layers"].values == (10, 20, 40)
    assert config_fields({"fine_tune_layers": 0, "batch_size": 8}) == {
        "fine_tune": "none", "train_batch_size": 8}


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = write(tmp_path, "space.json", '{"dropout": {"min": 0.5, "max": 0.1}}')
    code = cli_main(["--image_dir", str(tmp_path), "--space", path, "--directory",
                     str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: --space {path}: entry 'dropout'")
    assert cli_main(["--image_dir", str(tmp_path), "--time_budget", "soon"]) == 2
    assert "--time_budget 'soon'" in capsys.readouterr().err
    assert cli_main(["--image_dir", str(tmp_path), "--objective", "f1"]) == 2
    assert "write f1:max or f1:min" in capsys.readouterr().err
    missing = tmp_path / "no_such_pictures"
    assert cli_main(["--image_dir", str(missing), "--directory", str(tmp_path / "runs2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"image folder {missing} does not exist" in err
    assert not (tmp_path / "runs2").exists()  # stopped before a project folder was made


@pytest.mark.parametrize("trials_per_process", [None, 2])
def test_a_user_mistake_inside_a_trial_stops_the_search(tmp_path, trials_per_process):
    with pytest.raises(UserError, match="no such file"):
        run(tmp_path, "random", None, hypermodel=BrokenHyperModel, max_trials=3,
            trials_per_process=trials_per_process)


def test_trials_in_fresh_processes_give_the_same_search(tmp_path, capfd):
    # Each process runs at most 2 trials, then the next resumes the project: the trials
    # and scores are those of the same search run in one process.
    _, alone = run(tmp_path / "one", "random", GRID, max_trials=5)
    capfd.readouterr()
    _, recycled = run(tmp_path / "many", "random", GRID, max_trials=5, trials_per_process=2,
                      verbose=1)
    out = capfd.readouterr().out
    assert out.count("continuing in a fresh process") == 2
    assert len([line for line in out.splitlines() if line.startswith("trial ")]) == 5
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                              for r in rows]
    assert len(recycled) == 5
    assert drop_time(recycled) == drop_time(alone)


def test_unknown_keyword_is_rejected_with_the_valid_names(tmp_path):
    with pytest.raises(TypeError, match=r"Unrecognized arguments \['epoch'\].*epochs"):
        run(tmp_path, epoch=3)


def test_keras_tuner_internals_are_where_kapps_expects_them():
    """A keras-tuner release that moves a private part kapps uses fails here, by name."""
    from importlib.metadata import version

    from tuning import kt_internals

    setup_py = (Path(__file__).parent.parent / "setup.py").read_text(encoding="utf-8")
    assert f'"keras-tuner{kt_internals.SUPPORTED}"' in setup_py  # one range, in both places
    low, high = (part.lstrip("<>=") for part in kt_internals.SUPPORTED.split(","))
    as_tuple = lambda v: tuple(int(p) for p in v.split(".")[:3])  # noqa: E731
    assert as_tuple(low) <= as_tuple(version("keras-tuner")) < as_tuple(high)
    missing = [f"{getattr(owner, '__name__', owner)}.{name}" for owner, name in kt_internals.USED
               if not hasattr(owner, name)]
    assert not missing, f"keras-tuner no longer has {missing}; update tuning/kt_internals.py"


def test_the_command_line_knows_every_tuner_without_importing_them():
    """`kapps tune --help` reads tuner names from `tuning.defaults` (no keras-tuner)."""
    from tuning.defaults import TUNER_NAMES
    from tuning.tuners import TUNERS

    assert sorted(TUNERS) == list(TUNER_NAMES)


def test_the_best_of_equal_trials_is_the_earliest_everywhere():
    """The progress line, the table and --export_best name one best trial: the earliest
    of equal scores (keras-tuner's own order of ties changes as trials are added)."""
    from types import SimpleNamespace

    from tuning import results

    scores = [0.9, 0.5, float("nan"), 0.9, 0.9]
    trials = {str(i): SimpleNamespace(trial_id=str(i), status="COMPLETED", score=s)
              for i, s in enumerate(scores)}
    trials["5"] = SimpleNamespace(trial_id="5", status="FAILED", score=None)
    oracle = SimpleNamespace(trials=trials, objective=SimpleNamespace(direction="max"))
    assert results.best_trial(oracle).trial_id == "0"
    oracle.objective.direction = "min"
    assert results.best_trial(oracle).trial_id == "1"


class FreezeRecordingHyperModel(StubHyperModel):
    frozen = []

    def build(self, hp):
        type(self).frozen.append(gc.get_freeze_count())
        return super().build(hp)


def test_trials_run_with_what_existed_before_the_search_frozen_out_of_collections(tmp_path):
    """keras-tuner's full collections before each trial skip the objects alive when the
    search started (TensorFlow's, Keras'): they took a fifth of a head trial. The
    search gives them back to the collector when it ends."""
    FreezeRecordingHyperModel.frozen = []
    assert gc.get_freeze_count() == 0
    run(tmp_path, "random", GRID, max_trials=3, hypermodel=FreezeRecordingHyperModel)
    assert len(FreezeRecordingHyperModel.frozen) == 3
    assert all(count > 1000 for count in FreezeRecordingHyperModel.frozen)
    assert gc.get_freeze_count() == 0


def test_a_search_that_fits_in_one_process_runs_in_this_one(tmp_path, monkeypatch):
    """A fresh process for all the trials would only add its start-up: with no more
    trials than `trials_per_process` none is started."""
    from tuning import processes

    def no_child(*args):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(processes, "_run_child", no_child)
    _, rows = run(tmp_path, "random", GRID, max_trials=3, trials_per_process=3)
    assert len(rows) == 3
    with pytest.raises(AssertionError, match="child process"):
        run(tmp_path / "more", "random", GRID, max_trials=4, trials_per_process=3)


def test_the_first_child_of_a_fresh_search_decodes_while_tensorflow_starts(tmp_path,
                                                                           monkeypatch):
    """With its trials in child processes, the first child (which makes the features)
    is told to decode the pictures while TensorFlow starts in it; later children and a
    resumed search's are not (the features are cached by then)."""
    from retrain.data import decode_ahead
    from tuning import part, processes

    told = []

    def child(job_file, outcome_file, ahead=None):
        told.append(ahead)
        return {"more": len(told) % 2 == 1, "stopped_by_budget": False}

    monkeypatch.setattr(processes, "_run_child", child)
    run(tmp_path, "random", GRID, max_trials=4, trials_per_process=2)
    assert told == [(STUB_IMAGE_DIR, 32), None]  # lenet5's side
    run(tmp_path, "random", GRID, max_trials=4, trials_per_process=2)  # resumed
    assert told[2:] == [None, None]

    folder = imagegen.make_class_folder(tmp_path / "pics", {"a": 2, "b": 2})
    part.decode_ahead_from(["job.pkl", "outcome.json"])
    assert decode_ahead._state["stop"] is None
    part.decode_ahead_from(["job.pkl", "outcome.json", str(folder), "32"])
    try:
        assert decode_ahead._state["stop"] is not None
    finally:
        decode_ahead.stop()


@pytest.mark.parametrize("flags, started", [
    (["--max_trials", "3"], True),                      # one process: pictures decoded ahead
    ([], True),                                         # random's default 10 fits one process
    (["--max_trials", "30"], False),                    # child processes would not use them
    (["--max_trials", "30", "--trials_per_process", "0"], True),
])
def test_kapps_tune_decodes_ahead_only_for_a_search_in_its_own_process(
        tmp_path, monkeypatch, flags, started):
    import importlib

    from retrain.data import decode_ahead

    search_module = importlib.import_module("tuning.search")  # `tuning.search` is the function
    folder = imagegen.make_class_folder(tmp_path / "pics", {"a": 3, "b": 3})
    (tmp_path / "w.h5").write_bytes(b"never read: the search is stubbed")
    seen = []
    monkeypatch.setattr(search_module, "search",
                        lambda *a, **k: seen.append(decode_ahead._state["stop"] is not None))
    try:
        assert cli_main(["--image_dir", str(folder), "--weights", str(tmp_path / "w.h5"),
                          "--architecture", "lenet5"] + flags) == 0
    finally:
        decode_ahead.stop()
    assert seen == [started]
