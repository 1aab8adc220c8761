"""`.tflite` (LiteRT): float32, or quantized dynamic-range, float16 or full-integer (int8).

The file takes float32 RGB pixels (0..255) already resized to the model's size,
`[batch, height, width, 3]` (the runtimes need a fixed size; `retrain.prediction.backends.resize`
resizes as Keras does), and answers softmax scores. Input and output stay float32 in
every mode, so one backend runs them all. Labels go beside it (`labels.txt`): the
library that wrote them into LiteRT metadata, tflite-support, is no longer maintained.
"""
from kapps.process import quiet_stderr
from retrain.common import atomic

# Pictures of the training split int8 calibrates on: enough for stable ranges.
CALIBRATION_PICTURES = 300


def converter_settings(quantize):
    """`tf.lite.TFLiteConverter` attributes for a quantize mode (None: float32); int8 is
    `retrain.formats.int8`'s, which keeps sensitive layers in float."""
    import tensorflow as tf

    if quantize is None:
        return {}
    settings = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "float16":
        settings["target_spec"] = {"supported_types": [tf.float16]}
    return settings


def write_litert(model, path, size, quantize=None):
    """Convert `model` (raw pixels in, scores out) to a `.tflite` file at `path`, atomically.

    `size` is the file's fixed (height, width); `quantize` is None (float32), `dynamic`
    or `float16` (int8: `retrain.formats.int8.write_int8`).
    """
    import tensorflow as tf

    signature = [tf.TensorSpec([None, *size, 3], tf.float32, name="pixels")]
    # The converter prints its settings on stderr; shown only if it fails.
    with atomic.atomic_path(path, suffix=".tflite") as tmp, quiet_stderr():
        model.export(tmp, format="litert", input_signature=signature, verbose=False,
                     **converter_settings(quantize))
