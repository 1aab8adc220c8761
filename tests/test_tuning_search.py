"""Real searches on a tiny folder of coloured pictures: `kapps tune` end to end.

The "pretrained" base is LeNet-5 with weights saved to a file by the test (offline,
small), so trials train real heads on real cached bottleneck features. The exported
best model must then tell the colours apart; MirroredStrategy runs on two logical
CPU devices in a subprocess.
"""
import json
import os
import subprocess
import sys
import textwrap

import imagegen
import keras
import pytest

import kapps
from retrain.prediction.predictor import Predictor
from tuning.cli_tune import main as tune_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 14 pictures per class split into 32 / 8 / 2: even batches, which MirroredStrategy on
# two replicas needs (Keras 3.15 fails on a validation batch split 5/4 between replicas).
COLOURS = {"red": 14, "green": 14, "blue": 14}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    keras.utils.set_random_seed(1)
    weights = root / "lenet5_notop.weights.h5"
    kapps.create_model("lenet5", include_top=False, input_shape=(32, 32, 3)).save_weights(weights)
    images = imagegen.make_class_folder(root / "colours", COLOURS)
    return {"images": str(images), "weights": str(weights), "root": root}


def test_head_grid_search_reuses_the_cache_and_exports_a_model_that_predicts(
        folder, tmp_path, monkeypatch, capsys):
    import retrain.train.prepare
    import retrain.job
    calls = []
    prepare = retrain.train.prepare.prepare_data
    counted = lambda *a, **k: calls.append(1) or prepare(*a, **k)  # noqa: E731
    # retrain.job holds its own reference (the export of the best settings uses it).
    monkeypatch.setattr(retrain.train.prepare, "prepare_data", counted)
    monkeypatch.setattr(retrain.job, "prepare_data", counted)
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: [0.003, 0.05]\nhidden_layer: [false, true]\n"
                     "hidden_units: [16]\n", encoding="utf-8")
    export = tmp_path / "best"
    argv = ["--image_dir", folder["images"], "--architecture", "lenet5", "--weights",
            folder["weights"], "--image_size", "32", "--epochs", "5", "--tuner", "grid",
            "--space", str(space), "--directory", str(tmp_path / "runs"),
            "--bottleneck_dir", str(tmp_path / "cache"), "--trials_per_process", "0",
            "--summaries", "--export_best", str(export)]
    assert tune_main(argv) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4 and lines[0].startswith("trial 1/4 learning_rate=0.003 ")
    # One preparation (scan + bottleneck features) serves all 4 trials; the export of
    # the best settings (on train+validation) prepares once more, from the cache.
    assert len(calls) == 2

    project = tmp_path / "runs" / "grid_lenet5"
    saved = json.loads((project / "trials.json").read_text("utf-8"))
    scores = [t["score"] for t in saved["trials"]]
    assert len(scores) == 4 and all(t["status"] == "COMPLETED" for t in saved["trials"])
    assert max(scores) > 0.5 and saved["best_trial"] is not None
    # Trials are numbered from 1 in the table as on the console.
    assert f"(best: trial {saved['best_trial']})" in out
    assert f"exporting the best settings (trial {saved['best_trial']})" in out
    assert [t["trial"] for t in saved["trials"]] == [1, 2, 3, 4]
    # TensorBoard logs of each trial and of the export, under the project folder.
    logs = project / "summaries"
    assert sorted(p.name for p in logs.iterdir()) == ["export"] + [f"trial_00{n}"
                                                                 for n in range(1, 5)]
    assert all(list(run.rglob("events.out.tfevents.*")) for run in logs.iterdir())

    predictor = Predictor(str(export))
    for index, name in enumerate(COLOURS):
        picture = imagegen.image_array(imagegen.CLASS_COLORS[index], 32, noise=8, seed=99)
        assert predictor.predict(picture)[0].predictions[0].label == name

    # The same command again resumes a finished search: nothing is trained.
    calls.clear()
    assert tune_main(argv[:-2]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and calls == []
    assert "Reloading Tuner" not in out  # keras-tuner's own line would say it twice


def test_mirrored_strategy_on_two_logical_cpus(folder, tmp_path):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tuning
        from retrain.train import fit
        tuner, rows = tuning.search(
            {folder["images"]!r}, "random", {{"learning_rate": [0.003, 0.05]}}, max_trials=2,
            directory={str(tmp_path / "runs")!r}, architecture="lenet5",
            weights={folder["weights"]!r}, image_size=32, epochs=1, distribute=True,
            bottleneck_dir={str(tmp_path / "cache")!r}, verbose=0)
        print("replicas", fit._STRATEGY[0].num_replicas_in_sync)
        print("statuses", sorted({{r["status"] for r in rows}}), len(rows))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replicas 2" in done.stdout and "statuses ['COMPLETED'] 2" in done.stdout


def test_a_search_from_the_command_line_prints_nothing_to_stderr(folder, tmp_path):
    """`kapps tune` with its trials in child processes: no process shows TensorFlow's
    start-up lines, although the children inherit the log level kapps set."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "kapps.cli", "tune", "--image_dir", folder["images"],
         "--architecture", "lenet5", "--weights", folder["weights"], "--image_size", "32",
         "--epochs", "1", "--max_trials", "2", "--trials_per_process", "1",
         "--directory", str(tmp_path / "runs"), "--bottleneck_dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trial 2/2 " in done.stdout and "continuing in a fresh process" in done.stdout
    assert done.stderr == ""
