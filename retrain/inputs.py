"""Pictures into tensors for tf.data pipelines: training and the bottleneck cache.

Decoding goes through `retrain.images.load_image` (Pillow: EXIF orientation, CMYK,
16-bit, palette, ...) so every path into a model sees a picture the same way, and
runs on all cores when mapped with `num_parallel_calls`. A JPEG is decoded at the
reduced scale that still leaves the model's input size (`retrain.images.jpeg_scale`),
as prediction does. Resizing uses the same bilinear `tf.image.resize` as the
`Resizing` layer inside exported models.
"""
import numpy as np
import tensorflow as tf

from retrain.images import ImageError, load_image


def _load(path, min_side):
    path = path.item() if isinstance(path, np.ndarray) else path  # eager calls pass arrays
    try:
        return load_image(path.decode("utf-8"), min_side=int(min_side) or None)
    except ImageError:  # the dataset scan checked every file; this one changed since
        return np.zeros((1, 1, 3), np.uint8)


def decode(path, min_side=None):
    """tf.data map function: path string tensor -> uint8 (height, width, 3) pixels.

    `min_side` (the model's input side) lets a JPEG decode at a reduced scale. Pixels
    stay uint8 until resized, so a picture costs a quarter of the memory in flight. A
    file that became unreadable after the dataset scan gives a black picture rather
    than stopping a whole epoch.
    """
    pixels = tf.numpy_function(_load, [path, np.int64(min_side or 0)], tf.uint8,
                               stateful=False)
    pixels.set_shape([None, None, 3])
    return pixels


def decode_resize(path, size):
    """`decode` for a model of input side `size`, then resized to float32 (size, size, 3)."""
    return tf.image.resize(decode(path, size), [size, size])
