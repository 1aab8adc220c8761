"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or Ctrl-C never leaves a half-written file where a good one was, and two
processes writing the same cache entry cannot corrupt it.
"""
import contextlib
import json
import os
import uuid


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


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
