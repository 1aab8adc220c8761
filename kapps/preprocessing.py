"""Input preprocessing per architecture, as a function and as built-in Keras layers.

`preprocessing_layer` is what exported models carry, so a saved model takes raw RGB
pixels (0..255) and training and prediction can never preprocess differently. It is
made of Keras' own layers, so a `model.keras` loads with plain Keras, without kapps.
`Preprocess`, the kapps layer earlier exports carry, stays registered so they load.
"""
import keras
import numpy as np
from keras import ops

# ImageNet statistics used by the original weight files.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

MODES = ("caffe", "tf", "torch", "unit", "raw")


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"Preprocessing mode must be one of {MODES}. Received mode={mode!r}")


def preprocess_input(x, mode):
    """Map RGB pixels in [0, 255] to what a network of `mode` expects.

    `caffe`: RGB to BGR, minus the ImageNet means (VGG16, ResNet50).
    `tf`: scaled to [-1, 1] (Inception, MobileNet).
    `torch`: scaled to [0, 1], then normalised by ImageNet mean and std.
    `unit`: scaled to [0, 1] (LeNet-5 and models trained from scratch).
    `raw`: unchanged, as float32, for networks that rescale inside themselves
    (MobileNetV3, as `keras.applications` builds it), so the scaling is applied once.
    Works on NumPy arrays and on tensors.
    """
    _check_mode(mode)
    x = ops.cast(x, "float32")
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "unit":
        return x / 255.0
    if mode == "raw":
        return x
    if mode == "torch":
        return (x / 255.0 - np.array(_TORCH_MEAN, "float32")) / np.array(_TORCH_STD, "float32")
    return ops.flip(x, axis=-1) - np.array(_CAFFE_MEAN_BGR, "float32")


def preprocessing_layer(mode, name="preprocess"):
    """A built-in Keras layer computing `preprocess_input(x, mode)` on pixels in [0, 255].

    `raw` is an `Identity`; `tf`, `unit` and `torch` are one `Rescaling` (`x * scale + offset`, per channel for
    `torch`); `caffe` is a frozen 1x1 `Conv2D` whose kernel is the RGB-to-BGR permutation
    and whose bias is minus the BGR means, which computes exactly `x[..., ::-1] - mean`
    (each output is one input times 1, plus zeros, plus the bias).
    """
    _check_mode(mode)
    if mode == "raw":  # the network rescales itself (MobileNetV3)
        return keras.layers.Identity(name=name)
    if mode == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=name)
    if mode == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name=name)
    if mode == "torch":
        mean, std = np.array(_TORCH_MEAN, "float32"), np.array(_TORCH_STD, "float32")
        return keras.layers.Rescaling(1.0 / (255.0 * std), offset=-mean / std, name=name)
    layer = keras.layers.Conv2D(3, 1, name=name, trainable=False)
    layer.build((None, None, None, 3))
    flip = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)
    layer.set_weights([flip, -np.array(_CAFFE_MEAN_BGR, "float32")])
    return layer


@keras.saving.register_keras_serializable(package="kapps")
class Preprocess(keras.layers.Layer):
    """Keras layer applying `preprocess_input(x, mode)`; serialisable in safe mode.

    Exports made before `preprocessing_layer` carry it, and load through kapps with it.
    """

    def __init__(self, mode="tf", **kwargs):
        super().__init__(**kwargs)
        _check_mode(mode)
        self.mode = mode

    def call(self, inputs):
        return preprocess_input(inputs, self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
