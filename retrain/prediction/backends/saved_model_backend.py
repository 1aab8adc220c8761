"""SavedModel backend: the `serving_default` signature of a `kapps export --format
saved_model` folder (raw pixels in), batched like `model.keras`."""
from kapps.errors import UserError
from retrain.prediction.backends import error_text
from retrain.prediction.backends.keras_backend import KerasBackend
from retrain.formats.saved_model import OUTPUT, PIXELS_SIGNATURE


class SavedModelBackend(KerasBackend):
    """A SavedModel folder whose `serving_default` takes float32 pixels of any size."""

    def __init__(self, path, batch_size, threads=None):
        import tensorflow as tf

        self._tf = tf
        try:
            self._loaded = tf.saved_model.load(path)
            serve = self._loaded.signatures[PIXELS_SIGNATURE]
            height, width = (int(n) for n in self._loaded.image_size[0].numpy())
        except Exception as err:  # TF raises many types for a foreign or damaged folder
            raise UserError(f"cannot load SavedModel {path}: {error_text(err)[:200]}; pass "
                            "--model a folder written by `kapps export --format saved_model`") \
                from None
        self.num_classes = int(serve.structured_outputs[OUTPUT].shape[-1])
        self.batch_size = batch_size
        self.threads = threads
        self.min_side = max(height, width)
        self._compile(lambda x: serve(pixels=x)[OUTPUT], height, width, {})
