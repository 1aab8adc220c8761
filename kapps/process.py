"""Process plumbing: TensorFlow started without its C++ chatter, and a quick exit.

On a machine without a GPU, TensorFlow prints CUDA probing messages (and absl
notices) straight to the process's stderr, before any Python logging setting
applies: about ten lines when it loads, and `failed call to cuInit` when it first
uses a device. Here file descriptor 2 goes to a temporary file while TensorFlow
loads and while it starts its devices (`start_devices`, called just before kapps
builds or loads a model, where TensorFlow would start them anyway); if that fails,
what it printed is shown, so nothing useful is ever hidden.

The one environment variable kapps sets is `TF_CPP_MIN_LOG_LEVEL=2` (TensorFlow's
C++ INFO and WARNING lines off), and only with `setdefault` (child processes, such as
a search's trials, inherit it). Set it to 0 or 1 yourself, asking for TensorFlow's
INFO or WARNING lines, and kapps leaves all of TensorFlow's output alone.
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


_devices_started = []


def _quiet():
    """`quiet_stderr()`, unless TF_CPP_MIN_LOG_LEVEL asks for TensorFlow's INFO or WARNING
    lines (0 or 1): then the user sees all it prints."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1"):
        return contextlib.nullcontext()
    return quiet_stderr()


# Packages TensorFlow and Keras load as they import, though neither depends on them
# (so both import without them): scikit-learn for Keras' `keras.wrappers`, with scipy,
# and matplotlib's pyplot for `keras.visualization`. kapps' commands use none of those
# parts, and loading them cost 1.2 s of a 3.4 s TensorFlow import when the files are
# cached, more when they are not. So a command-line process (`command_line()`) loads
# TensorFlow with them held back; they import as usual afterwards for the commands that
# use them (retrain's metrics and figures). A library caller's process is left as it
# is: its own code may want those parts of Keras.
HELD_BACK = ("sklearn", "scipy", "matplotlib")
_command_line = []


def command_line():
    """Mark this process as a kapps command's; call it before the command's `main`."""
    _command_line.append(True)


@contextlib.contextmanager
def _holding_back():
    """Make the `HELD_BACK` packages not yet imported unimportable for the block (their
    importers then do without them), in a command-line process."""
    held = [name for name in HELD_BACK if _command_line and name not in sys.modules]
    for name in held:
        sys.modules[name] = None  # `import name` raises ImportError meanwhile
    try:
        yield
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def import_tensorflow():
    """Import TensorFlow (once) with its start-up logging hidden (and, in a command-line
    process, without the `HELD_BACK` packages)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with _quiet(), _holding_back():
            import tensorflow  # noqa: F401


def start_devices(threads=None):
    """Start TensorFlow's devices (once) quietly: the CUDA probe happens here, not at import.

    Called just before kapps builds or loads a model, which starts the devices anyway,
    so the device configuration is fixed no earlier than without kapps. `threads` caps
    TensorFlow's thread pools (as `--threads` does the runtimes'); TensorFlow fixes
    them when it starts, so it applies only to the first call in a process.
    """
    import_tensorflow()
    if _devices_started:
        return
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
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
