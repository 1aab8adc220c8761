"""A SavedModel that TF Serving serves as it is: raw pixels, or encoded pictures as bytes.

Two signatures: `serving_default` takes float32 RGB pixels (0..255) of any size,
`[None, None, None, 3]` (the model resizes them), and `serving_bytes` takes a batch of
encoded pictures (JPEG, PNG, GIF, BMP), the string tensor TF Serving's REST API fills
from `{"b64": "..."}` values, decoded and resized inside. Both answer `scores`, one row of
softmax scores per picture. The labels sit in `assets/labels.txt`, TF Serving's place
for a model's extra files, and `image_size` holds the (height, width) pictures are
resized to.
"""
import os
import shutil

from retrain.common import atomic
from retrain.common.files import SAVED_MODEL_LABELS

PIXELS_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
OUTPUT = "scores"


def write_saved_model(model, path, size, labels_path):
    """Write `model` (raw pixels in, scores out) as a SavedModel folder at `path`, atomically.

    `size` is the (height, width) encoded pictures are resized to, as training resized them.
    """
    import keras
    import tensorflow as tf

    from retrain.formats.graph import decode_picture

    def from_pixels(pixels):
        return {OUTPUT: model(pixels, training=False)}

    def decode(data):  # as the legacy graph decodes: the pixels Pillow gives kapps predict
        image = decode_picture(data, max(size))
        image.set_shape([None, None, 3])
        return tf.image.resize(image, size)

    def from_bytes(image_bytes):
        pixels = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
        return {OUTPUT: model(pixels, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(PIXELS_SIGNATURE, from_pixels, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="pixels")])
    archive.add_endpoint(BYTES_SIGNATURE, from_bytes, input_signature=[
        tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_variable_collection("image_size", [tf.Variable(size, trainable=False)])
    with atomic.atomic_dir(path) as tmp:
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, os.path.dirname(SAVED_MODEL_LABELS)), exist_ok=True)
        shutil.copyfile(labels_path, os.path.join(tmp, SAVED_MODEL_LABELS))
