"""End a command-line process without TensorFlow's teardown.

After a command has written and closed all of its outputs (every export is written
atomically before `main` returns), Python's normal exit still spends about a second
here unloading TensorFlow: finalising modules, joining its thread pools. For a short
command (a transfer run of 10 s, a prediction) that is a tenth of the wait. So the
command-line entry points flush what is buffered and leave with `os._exit`. Library
calls and tests never go through here.
"""
import logging
import os
import sys


def exit_now(code):
    """Flush stdout, stderr and logging, then end the process with `code` at once."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to show
            pass
    os._exit(int(code or 0))
