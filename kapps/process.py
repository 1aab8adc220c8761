"""Process plumbing: TensorFlow started without its C++ chatter, and a quick exit.

On a machine without a GPU, TensorFlow prints CUDA probing messages (and absl
notices) straight to the process's stderr, before any Python logging setting
applies. Here file descriptor 2 goes to a temporary file while TensorFlow loads
(and, for the command line, while it probes devices); if that fails, what it
printed is shown, so nothing useful is ever hidden.
"""
import contextlib
import logging
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_stderr():
    """Send fd 2 to a temporary file for the block; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """Import TensorFlow (once) with its start-up logging hidden."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with quiet_stderr():
            import tensorflow  # noqa: F401


def probe_devices():
    """Initialise TensorFlow's devices quietly (the CUDA probe happens here, not at import).

    Only for command-line entry points: afterwards the device configuration is fixed.
    """
    import_tensorflow()
    import tensorflow as tf

    with quiet_stderr():
        tf.config.list_logical_devices()


# Ending a command-line process without TensorFlow's teardown:
# after a command has written and closed all of its outputs (every export is written
# atomically before `main` returns), Python's normal exit still spends about a second
# unloading TensorFlow (finalising modules, joining its thread pools). For a short
# command that is a tenth of the wait, so command-line entry points flush and leave
# with `os._exit`. Library calls and tests never go through here.


def exit_now(code):
    """Flush stdout, stderr and logging, then end the process with `code` at once."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to show
            pass
    os._exit(int(code or 0))
