"""Pictures into tensors for tf.data pipelines: training and the bottleneck cache.

Decoding goes through `retrain.images.load_image` (Pillow: EXIF orientation, CMYK,
16-bit, palette, ...) so every path into a model sees a picture the same way, and
runs on all cores when mapped with `num_parallel_calls`. Resizing uses the same
bilinear `tf.image.resize` as the `Resizing` layer inside exported models.
"""
import numpy as np
import tensorflow as tf

from retrain.images import ImageError, load_image


def _load(path):
    try:
        return load_image(path.decode("utf-8")).astype(np.float32)
    except ImageError:  # the dataset scan checked every file; this one changed since
        return np.zeros((1, 1, 3), np.float32)


def decode(path):
    """tf.data map function: path string tensor -> float32 (height, width, 3) pixels in [0, 255].

    A file that became unreadable after the dataset scan gives a black picture rather
    than stopping a whole epoch.
    """
    pixels = tf.numpy_function(_load, [path], tf.float32, stateful=False)
    pixels.set_shape([None, None, 3])
    return pixels


def decode_resize(path, size):
    """`decode`, then resized to (size, size, 3)."""
    return tf.image.resize(decode(path), [size, size])
