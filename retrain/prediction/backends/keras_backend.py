"""`model.keras` backend: raw RGB pixels in, batches decoded in parallel with tf.data.

A single picture goes straight to a compiled call, since `model.predict` costs far
more per call than the network itself on one picture.
"""

import numpy as np

from kapps.errors import UserError
from retrain.data import images
from retrain.prediction.backends import as_rgb, error_text, load_picture, metrics_image_size
from retrain.common.files import METRICS_FILE
from retrain.common.layers import resize_layer


def model_image_size(model, folder):
    """(height, width) pictures are resized to: the model's own `resize` layer (searched in
    nested models too), else metrics.json's config, else the model's fixed input size.

    The layer comes first because it is what the model really does: a size read from
    anywhere else would resize twice when the two disagree.
    """
    resize = resize_layer(model)
    if resize is not None:
        return resize.height, resize.width
    size = metrics_image_size(folder)
    if size is not None:
        return size
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise UserError(f"cannot tell the image size of the model in {folder}: it has no "
                        f"{METRICS_FILE}, `resize` layer or fixed input size; add {METRICS_FILE} "
                        "with config.image_size")
    return height, width


class KerasBackend:
    """A `model.keras` whose input is raw RGB pixels; batches go through tf.data."""

    def __init__(self, path, folder, batch_size, threads=None):
        import tensorflow as tf
        import keras
        import kapps.preprocessing  # noqa: F401  (registers kapps.Preprocess for loading)

        self._tf = tf
        try:
            self.model = keras.saving.load_model(path, safe_mode=True)
        except Exception as err:  # Keras raises many types for a damaged or foreign file.
            raise UserError(f"cannot load model {path}: {error_text(err) or type(err).__name__}; "
                            "pass --model a model exported by `kapps retrain`") from None
        self.num_classes = int(self.model.output_shape[-1])
        self.batch_size = batch_size
        self.threads = threads  # tf.data's decoding pool; None: TensorFlow's default
        height, width = model_image_size(self.model, folder)
        self.min_side = max(height, width)
        # The model's own resize settings (interpolation, cropping) at the batching size, so
        # its `resize` layer then sees the size it produces and leaves the pixels unchanged.
        resize = resize_layer(self.model)
        self._compile(lambda x: self.model(x, training=False), height, width,
                      dict(resize.get_config()) if resize is not None else {})

    def _compile(self, call, height, width, resize_config):
        """Resize pictures to (height, width) with `resize_config`, then run `call` on batches."""
        import keras

        self.height, self.width = height, width
        plain = {"interpolation": "bilinear", "crop_to_aspect_ratio": False,
                 "pad_to_aspect_ratio": False, "antialias": False}
        # Pictures resized by `retrain.prediction.backends.resize` get the model's own pixels only
        # when the model resizes as plainly: else callers must send decoded pixels.
        self.input_size = (height, width) if all(
            resize_config.get(key, value) == value for key, value in plain.items()) else None
        config = dict(resize_config, height=height, width=width, name="predict_resize")
        self._resize = keras.layers.Resizing.from_config(config)
        self._call = self._tf.function(
            call, input_signature=[self._tf.TensorSpec([None, height, width, 3], self._tf.float32)],
            autograph=False)

    def infer(self, batch):
        """The model's outputs for float32 pixels already at (height, width), [batch, h, w, 3]
        (resized as `retrain.prediction.backends.resize` does, which is what the model's own resize
        computes), as a server that resizes each picture while decoding it sends them."""
        return self._call(np.asarray(batch, np.float32)).numpy()

    def _prepare(self, pixels):
        return self._resize(self._tf.cast(pixels, self._tf.float32))

    def run(self, items):
        """A list with, per item, its scores (num_classes,) or an error string."""
        if not items:
            return []
        if all(isinstance(item, np.ndarray) for item in items):
            return self._run_arrays(items)
        if len(items) == 1:
            try:
                pixels = load_picture(items[0], self.min_side)
            except images.ImageError as err:
                return [error_text(err)]
            return [self._call(self._prepare(pixels)[None]).numpy()[0]]
        return self._run_batched(items)

    def _run_arrays(self, arrays):
        """Pictures already in memory: no tf.data pipeline, whose set-up (about 0.1 s a
        call) costs more than scoring a few pictures, as a server's batches are.

        Pictures of one size are resized together; then `batch_size` at a time go
        through the compiled call, in input order.
        """
        arrays = [as_rgb(array) for array in arrays]
        by_shape = {}
        for index, array in enumerate(arrays):
            by_shape.setdefault(array.shape, []).append(index)
        prepared = [None] * len(arrays)
        for indices in by_shape.values():
            resized = self._prepare(np.stack([arrays[i] for i in indices])).numpy()
            for row, index in enumerate(indices):
                prepared[index] = resized[row]
        scores = []
        for start in range(0, len(prepared), self.batch_size):
            batch = np.stack(prepared[start:start + self.batch_size])
            scores.extend(self._call(batch).numpy())
        return scores

    def _run_batched(self, items):
        tf = self._tf
        errors = {}

        def load(index):
            index = int(index)
            try:
                return load_picture(items[index], self.min_side)
            except images.ImageError as err:
                errors[index] = error_text(err)
                return np.zeros((1, 1, 3), np.uint8)  # a stand-in; its scores are dropped

        @tf.autograph.experimental.do_not_convert
        def decode(index):
            pixels = tf.numpy_function(load, [index], tf.uint8, stateful=False)
            pixels.set_shape([None, None, 3])
            return self._prepare(pixels)

        dataset = (tf.data.Dataset.range(len(items))
                   .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(self.batch_size)
                   .prefetch(tf.data.AUTOTUNE))
        if self.threads:
            options = tf.data.Options()
            options.threading.private_threadpool_size = self.threads
            dataset = dataset.with_options(options)
        scores = np.concatenate([self._call(batch).numpy() for batch in dataset])
        return [errors.get(i, scores[i]) for i in range(len(items))]
