"""Pictures into tensors: parallel decoding with tf.data, shared by training and prediction.

Decoding goes through `retrain.images.load_image` (Pillow: EXIF orientation, CMYK,
16-bit, palette, ...) so every path into a model sees a picture the same way, and
runs on all cores through `num_parallel_calls`. Resizing uses the same bilinear
`tf.image.resize` as the `Resizing` layer inside exported models.
"""
import numpy as np
import tensorflow as tf

from retrain.images import ImageError, load_image


def _decode(path):
    """(pixels float32 (h, w, 3), ok flag): a broken file gives a 1x1 black picture and ok=False,
    so one bad file never stops a batch."""
    try:
        return load_image(path.decode("utf-8")).astype(np.float32), np.True_
    except ImageError:
        return np.zeros((1, 1, 3), np.float32), np.False_


def decode_resize(path, size):
    """tf.data map function: path string tensor -> ((size, size, 3) float32 pixels, ok flag)."""
    pixels, ok = tf.numpy_function(_decode, [path], [tf.float32, tf.bool], stateful=False)
    pixels.set_shape([None, None, 3])
    ok.set_shape([])
    return tf.image.resize(pixels, [size, size]), ok


def picture_dataset(paths, size, batch_size=64):
    """Batches of (pixels, ok) for `paths`, decoded in parallel, in the order given."""
    ds = tf.data.Dataset.from_tensor_slices(np.array([str(p) for p in paths], dtype=object)
                                            .astype(str))
    ds = ds.map(lambda p: decode_resize(p, size), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
