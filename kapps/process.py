"""Process plumbing: TensorFlow started without its C++ chatter, and a quick exit.

On a machine without a GPU, TensorFlow prints CUDA probing messages (and absl
notices) straight to the process's stderr, before any Python logging setting
applies: about ten lines when it loads, and `failed call to cuInit` when it first
uses a device. Here file descriptor 2 goes to a temporary file while TensorFlow
loads and while it starts its devices (`start_devices`, called just before kapps
builds or loads a model, where TensorFlow would start them anyway); if that fails,
what it printed is shown, so nothing useful is ever hidden.

The one environment variable kapps sets is `TF_CPP_MIN_LOG_LEVEL=2` (TensorFlow's
C++ INFO and WARNING lines off), and only with `setdefault`. Set it yourself, to any
value, before kapps imports TensorFlow, and kapps leaves TensorFlow's output alone:
`TF_CPP_MIN_LOG_LEVEL=0` shows all of it.
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


# Whether the user chose TensorFlow's log level (read before kapps sets its default).
_USER_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ
_devices_started = []


def _quiet():
    """`quiet_stderr()`, unless the user set TF_CPP_MIN_LOG_LEVEL: then they see it all."""
    return contextlib.nullcontext() if _USER_LOG_LEVEL else quiet_stderr()


def import_tensorflow():
    """Import TensorFlow (once) with its start-up logging hidden."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with _quiet():
            import tensorflow  # noqa: F401


def start_devices():
    """Start TensorFlow's devices (once) quietly: the CUDA probe happens here, not at import.

    Called just before kapps builds or loads a model, which starts the devices anyway,
    so the device configuration is fixed no earlier than without kapps.
    """
    import_tensorflow()
    if _devices_started:
        return
    import tensorflow as tf

    with _quiet():
        tf.config.list_logical_devices()
    _devices_started.append(True)


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
