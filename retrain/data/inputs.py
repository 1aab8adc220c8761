"""Pictures into tensors for tf.data pipelines: training and the bottleneck cache.

Decoding goes through `retrain.data.images.load_image` (Pillow: EXIF orientation, CMYK,
16-bit, palette, ...) so every path into a model sees a picture the same way, and
runs on all cores when mapped with `num_parallel_calls`. A JPEG is decoded at the
reduced scale that still leaves the model's input size (`retrain.data.images.jpeg_scale`),
as prediction does. Resizing uses the same bilinear `tf.image.resize` as the
`Resizing` layer inside exported models.

The folder scan decoded every picture once; one that cannot be read any more (it
changed since) is reported in one warning line and left out: it must never train,
validate or count in a test score as a black picture. A picture the scan only opened
(`forget_broken`'s `unchecked`: the feature pass decodes it next) is checked by its
first decode here, and a failure is reported as the scan reports a broken file.
"""
import sys

import numpy as np
import tensorflow as tf

from retrain.data import decode_ahead
from retrain.data.dataset import BROKEN_SHOWN, REPORT_FILENAME, broken_line
from retrain.data.images import ImageError

# path -> reason, for every picture that broke after the scan (filled from tf.data's
# threads through `numpy_function`, which runs in this process).
_BROKEN = {}
_UNCHECKED = set()  # paths whose first decode here is their check


def _say_broken(path, reason):
    """One line on stderr for a picture the feature pass could not decode."""
    if path in _UNCHECKED:
        print(broken_line(path, reason), file=sys.stderr, flush=True)
    else:
        print(f"warning: {path} cannot be read any more ({reason}); it changed since the "
              "folder was scanned and is left out", file=sys.stderr, flush=True)


def _load(path, min_side):
    path = path.item() if isinstance(path, np.ndarray) else path  # eager calls pass arrays
    path = path.decode("utf-8")
    min_side = int(min_side) or None
    try:
        return decode_ahead.load(path, min_side)  # perhaps decoded while TensorFlow started
    except ImageError as err:
        if path not in _BROKEN:
            _BROKEN[path] = err.reason
            if len(_BROKEN) <= BROKEN_SHOWN:  # the others: counted in the summary after
                _say_broken(path, err.reason)
            elif len(_BROKEN) == BROKEN_SHOWN + 1:  # a line even where no summary follows
                print(f"warning: more than {BROKEN_SHOWN} pictures could not be decoded; "
                      f"the others are left out without a line each, every one listed in "
                      f"{REPORT_FILENAME} beside the model", file=sys.stderr, flush=True)
        return np.zeros((0, 0, 3), np.uint8)


def decode(path, min_side=None):
    """tf.data map function: path string tensor -> uint8 (height, width, 3) pixels.

    `min_side` (the model's input side) lets a JPEG decode at a reduced scale. Pixels
    stay uint8 until resized, so a picture costs a quarter of the memory in flight. A
    file that became unreadable after the dataset scan gives an empty (0, 0, 3)
    picture (see `readable`) and is listed by `broken_since_scan`.
    """
    pixels = tf.numpy_function(_load, [path, np.int64(min_side or 0)], tf.uint8,
                               stateful=False)
    pixels.set_shape([None, None, 3])
    return pixels


def readable(pixels):
    """False for the empty picture `decode` gives for a file that broke after the scan."""
    return tf.size(pixels) > 0


def resize(pixels, size):
    """`pixels` resized to (size, size, 3); an empty picture gives black ones (never kept:
    callers drop what `broken_since_scan` lists)."""
    return tf.cond(readable(pixels), lambda: tf.image.resize(pixels, [size, size]),
                   lambda: tf.zeros([size, size, 3]))


def broken_since_scan(records):
    """{path: reason} of the `records` whose file could not be decoded since the scan."""
    return {r.path: _BROKEN[r.path] for r in records if r.path in _BROKEN}


def mark_broken(found):
    """Treat the pictures of `found` ({path: reason}) as broken since the scan: another
    worker of a multi-worker run could not read them, so none of the workers uses them."""
    _BROKEN.update(found)


def forget_broken(records, unchecked=()):
    """Forget earlier failures of `records`' files: a new scan has just read them, so a
    picture fixed since an earlier run in this process is used again. The scan decoded
    them, except the paths in `unchecked`, which it only opened: their first decode is
    their check."""
    for r in records:
        _BROKEN.pop(r.path, None)
        _UNCHECKED.discard(r.path)
    _UNCHECKED.update(unchecked)


def decode_resize(path, size):
    """`decode` for a model of input side `size`, then `resize`d to float32 (size, size, 3)."""
    return resize(decode(path, size), size)
