"""Start TensorFlow without its C++ start-up chatter.

On a machine without a GPU, TensorFlow prints CUDA probing messages (and absl
notices) straight to the process's stderr, before any Python logging setting
applies. Here file descriptor 2 goes to a temporary file while TensorFlow loads
(and, for the command line, while it probes devices); if that fails, what it
printed is shown, so nothing useful is ever hidden.
"""
import contextlib
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
