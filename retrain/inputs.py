"""Pictures into tensors for tf.data pipelines: training and the bottleneck cache.

Decoding goes through `retrain.images.load_image` (Pillow: EXIF orientation, CMYK,
16-bit, palette, ...) so every path into a model sees a picture the same way, and
runs on all cores when mapped with `num_parallel_calls`. Resizing uses the same
bilinear `tf.image.resize` as the `Resizing` layer inside exported models.

The folder scan decoded every picture once; one that cannot be read any more (it
changed since) is reported in one warning line and left out: it must never train,
validate or count in a test score as a black picture.
"""
import sys

import numpy as np
import tensorflow as tf

from retrain.images import ImageError, load_image

# path -> reason, for every picture that broke after the scan (filled from tf.data's
# threads through `numpy_function`, which runs in this process).
_BROKEN = {}


def _load(path):
    path = path.decode("utf-8")
    try:
        return load_image(path).astype(np.float32)
    except ImageError as err:
        if path not in _BROKEN:
            _BROKEN[path] = err.reason
            print(f"warning: {path} cannot be read any more ({err.reason}); it changed since "
                  "the folder was scanned and is left out", file=sys.stderr, flush=True)
        return np.zeros((0, 0, 3), np.float32)


def decode(path):
    """tf.data map function: path string tensor -> float32 (height, width, 3) pixels in [0, 255].

    A file that became unreadable after the dataset scan gives an empty (0, 0, 3)
    picture (see `readable`) and is listed by `broken_since_scan`.
    """
    pixels = tf.numpy_function(_load, [path], tf.float32, stateful=False)
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


def forget_broken(records):
    """Forget earlier failures of `records`' files: a new scan has just decoded them, so
    a picture fixed since an earlier run in this process is used again."""
    for r in records:
        _BROKEN.pop(r.path, None)
