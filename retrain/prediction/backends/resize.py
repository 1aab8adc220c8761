"""Bilinear resizing in NumPy, computing what `tf.image.resize` (and so Keras' `Resizing`
layer) computes: half-pixel centres, no antialiasing, float32 arithmetic in TF's order.

The LiteRT and ONNX exports take pictures already resized to the model's side; resizing
them here the way the Keras model does inside keeps their scores equal to its own
without importing TensorFlow.
"""
import numpy as np


def _weights(in_size, out_size):
    """Per output index: (lower, upper) source indices and the float32 weight of upper."""
    scale = np.float32(in_size) / np.float32(out_size)
    source = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(source)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(source).astype(np.int64), in_size - 1)
    return lower, upper, (source - floor).astype(np.float32)


def resize_bilinear(pixels, height, width):
    """(H, W, C) pixels as float32 (height, width, C), as `tf.image.resize` would give them.

    The source is read in its own type (uint8 from a decoder) and only the columns the
    output needs are made float32: a 7000x7000 picture resized for 96 px costs 8 MB
    beside itself, not the 588 MB of a float32 copy. The values are the same, since
    uint8 to float32 is exact.
    """
    pixels = np.asarray(pixels)
    if pixels.shape[:2] == (height, width):
        return pixels.astype(np.float32, copy=False)
    top, bottom, y_lerp = _weights(pixels.shape[0], height)
    left, right, x_lerp = _weights(pixels.shape[1], width)
    # Along the width first, once per source row, then the rows each output row needs:
    # the same float32 operations in TF's order (top/bottom mixes of left/right, then
    # top + (bottom - top) * y_lerp), so bit-identical, with half the gathers.
    lefts = pixels[:, left].astype(np.float32)
    rows = lefts + (pixels[:, right].astype(np.float32) - lefts) * x_lerp[None, :, None]
    tops = rows[top]
    return tops + (rows[bottom] - tops) * y_lerp[:, None, None]
