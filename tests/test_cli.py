"""The command lines as a user runs them: separate processes, real pipes."""
import os
import subprocess
import sys

import pytest


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
