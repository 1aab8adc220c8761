"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or Ctrl-C never leaves a half-written file where a good one was, and two
processes writing the same cache entry cannot corrupt it.
"""
import contextlib
import json
import os
import shutil
import uuid

from kapps.errors import UserError


def check_writable(path, flag):
    """`UserError` now, before any work, if the folder `path` (given as `flag`) could not be
    created or written: a run should not train for an hour and then fail to save."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder; pass a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {existing}; pass a folder you can "
                        "write to")


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    `suffix` defaults to `path`'s own extension, for writers that infer the format
    from it (Keras `model.save`, matplotlib `savefig`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1] or ".tmp"
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}{suffix}")
    # Created here with mode 0666, which the kernel reduces by the user's umask, so the file
    # gets the user's usual mode (mkstemp's 0600 would not) without reading or changing the
    # process-wide umask; O_EXCL: never someone else's file.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; on success it replaces the folder `path`.

    An existing `path` is renamed aside first and removed only once the new one is in
    place, so a failure at any point leaves the old folder (or nothing) there.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:12]}")
    os.mkdir(tmp, 0o777)  # the kernel applies the user's umask, as for atomic_path
    try:
        yield tmp
        old = None
        if os.path.exists(path):
            old = os.path.join(parent, f".{name}.old.{uuid.uuid4().hex[:12]}")
            os.mkdir(old)
            os.replace(path, os.path.join(old, name))
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
