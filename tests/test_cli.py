"""The command lines as a user runs them: separate processes, real pipes."""
import os
import subprocess
import sys

import pytest

from probes import printed_by


@pytest.mark.parametrize("argv, code, stream, text", [
    (["summary", "lenet5"], 0, "stdout", "conv2"),
    (["summary", "no_such_net"], 2, "stderr", "lenet5"),
])
def test_the_command_flushes_its_output_before_its_quick_exit(argv, code, stream, text):
    """`kapps` leaves with `os._exit` (no TensorFlow teardown): what it printed into a
    pipe, which Python buffers, must still arrive, with the right exit status."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffer the pipe
    done = subprocess.run([sys.executable, "-m", "kapps.cli"] + argv, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == code, done.stderr[-2000:]
    assert text in getattr(done, stream)


@pytest.mark.parametrize("module", ["retrain", "tuning"])
def test_commands_start_without_tensorflow_chatter(module):
    """TensorFlow's C++ start-up lines (CUDA probing, absl notices) stay hidden, also
    where a package imports Keras before anything else."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0 and "usage:" in done.stdout
    assert "absl" not in done.stderr and "cuda" not in done.stderr.lower(), done.stderr


# Runs `kapps ARGS...` and prints, as its last line of stdout, whether TensorFlow was
# imported when the process ended (by `os._exit` after a command, or argparse's SystemExit).
_TF_PROBE = r"""
import os, runpy, sys
def _note():
    sys.stdout.write("\ntensorflow imported: %s\n" % ("tensorflow" in sys.modules))
    sys.stdout.flush()
_real_exit = os._exit
def _exit(code):
    _note()
    _real_exit(code)
os._exit = _exit
sys.argv = ["kapps"] + sys.argv[1:]
try:
    runpy.run_module("kapps.cli", run_name="__main__")
finally:
    _note()
"""


@pytest.mark.parametrize("argv, code, text", [
    (["--help"], 0, "commands:"),
    (["retrain", "--help"], 0, "--image_dir"),
    (["predict", "--help"], 0, "--top_k"),
    (["tune", "--help"], 0, "--tuner"),
    (["summary", "--help"], 0, "lenet5"),
    (["retrain", "--epochz", "3"], 2, "unrecognized arguments: --epochz"),
    (["tune", "--tuner", "genetic"], 2, "invalid choice"),
    (["retrain", "--image_dir", "/nonexistent/pets"], 2, "/nonexistent/pets does not exist"),
    (["tune", "--image_dir", "/nonexistent/pets"], 2, "/nonexistent/pets does not exist"),
    (["predict", "--model", "/nonexistent", "x.png"], 2, "model not found: /nonexistent"),
    (["models"], 0, "mobilenet_v2"),
    (["retrain", "--image_dir", ".", "--architecture", "mobilenet_v9"], 2,
     "Unknown model 'mobilenet_v9'"),
    (["tune", "--image_dir", ".", "--architecture", "vgg61"], 2, "Unknown model 'vgg61'"),
    (["summary", "resnet9000"], 2, "Valid names"),
])
def test_help_mistakes_and_the_models_table_answer_without_tensorflow(argv, code, text):
    """Importing TensorFlow takes seconds: help, a flag or file mistake and the static
    `kapps models` table must answer before it (bench/bench_startup.py times them)."""
    done = subprocess.run([sys.executable, "-c", _TF_PROBE] + argv, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code, done.stderr[-2000:]
    assert text in done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("tensorflow imported: False")


def test_the_probe_sees_tensorflow_when_a_command_imports_it():
    """The negative twin: `kapps summary` builds a network, so the probe must say so."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", _TF_PROBE, "summary", "lenet5"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("tensorflow imported: True")
    assert done.stderr == ""  # and it loaded without TensorFlow's start-up lines


def test_importing_and_using_the_packages_prints_nothing():
    """No TensorFlow start-up lines (absl notices, `failed call to cuInit`) from a plain
    import and a first model build, and no process-wide umask change at import."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import os; calls = []; real = os.umask; "
            "os.umask = lambda mask: calls.append(mask) or real(mask); "
            "import retrain, tuning, kapps, retrain.common.atomic; assert not calls, calls; "
            "kapps.create_model('lenet5', input_shape=(32, 32, 3))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "" and done.stdout == ""


def test_a_user_who_sets_the_log_level_sees_tensorflow_output():
    """kapps hides TensorFlow's start-up output only while the user has not chosen a log
    level (the documented way to see it): the negative twin of the test above."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
    code = "import kapps; kapps.create_model('lenet5', input_shape=(32, 32, 3))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr != ""


def test_what_a_command_holds_back_while_tensorflow_imports_still_works_afterwards():
    """A command loads TensorFlow without scikit-learn, scipy and matplotlib (Keras would
    load them for parts kapps does not use); afterwards they import as usual, and
    keras-tuner's Bayesian tuner, imported after TensorFlow, has scikit-learn."""
    code = ("import sys; from kapps import process; process.command_line(); "
            "process.import_tensorflow(); "
            "held = [n for n in process.HELD_BACK if n in sys.modules]; "
            "import sklearn.metrics, matplotlib.pyplot, scipy.stats; "
            "import keras_tuner.src.tuners.bayesian as bayesian; "
            "print(held, bayesian.sklearn is not None)")
    assert printed_by(code) == ["[]", "True"]
