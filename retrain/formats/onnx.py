"""`.onnx` through Keras' own `model.export(format="onnx")` (tf2onnx underneath).

The file takes float32 RGB pixels (0..255) already resized to the model's size,
`[batch, height, width, 3]`, as the `.tflite` export does, and answers softmax scores.
"""
import warnings

from retrain.common import atomic


def write_onnx(model, path, size):
    """Convert `model` (raw pixels in, scores out) to an `.onnx` file at `path`, atomically;
    `size` is the file's fixed (height, width)."""
    import keras
    import tensorflow as tf

    # Keras' ONNX export calls the model without `training=False`, and in this Keras
    # (3.15) BatchNormalization then normalises by the batch's own statistics (and Dropout
    # drops): scores off by up to 0.5 on a SmallCNN. A wrapper that calls it in inference
    # mode exports what `model.predict` computes.
    pixels = keras.Input(model.inputs[0].shape[1:], name="pixels")
    model = keras.Model(pixels, model(pixels, training=False), name=model.name)
    signature = [tf.TensorSpec([None, *size, 3], tf.float32, name="pixels")]
    with atomic.atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        # Keras patches tf2onnx for NumPy 2 and NumPy warns about the `np.object` it probes.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*np.object.*")
        model.export(tmp, format="onnx", input_signature=signature, verbose=False)
