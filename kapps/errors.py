"""User-facing errors: one line that names the file or flag and says what to do.

Library code raises `UserError` for mistakes a user can fix (a missing folder, a bad
flag); command-line entry points print its message on one line, without a traceback,
and exit with status 2. Anything else is a bug: it keeps its traceback, exits with
status 1 and says so, so an error inside Keras or kapps never passes for the user's.
"""
import os
import sys
import traceback

BUG_LINE = "this is a bug in kapps; please report it with the traceback above"


class UserError(Exception):
    """A mistake in the user's input, with the fix in the message."""


def run_cli(main_fn, argv):
    """Call `main_fn(argv)`: a `UserError` becomes a one-line message and exit 2; any
    other exception prints its traceback, then `BUG_LINE`, and exits 1."""
    try:
        return main_fn(argv) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:  # noqa: BLE001 (reported, not swallowed: the traceback is printed)
        traceback.print_exc()
        print(f"error: {BUG_LINE}", file=sys.stderr)
        return 1
