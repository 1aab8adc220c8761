"""User-facing errors: one line that names the file or flag and says what to do.

Library code raises `UserError` for mistakes a user can fix (a missing folder, a bad
flag); command-line entry points print its message on one line, without a traceback,
and exit with status 2. Internal bugs raise ordinary exceptions.
"""
import os
import sys


class UserError(Exception):
    """A mistake in the user's input, with the fix in the message."""


def run_cli(main_fn, argv):
    """Call `main_fn(argv)`; a `UserError` or `ValueError` becomes a one-line message and exit 2."""
    try:
        return main_fn(argv) or 0
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
