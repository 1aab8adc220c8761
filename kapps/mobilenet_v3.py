"""MobileNetV3 Small and Large, layer for layer as `keras.applications` builds them.

Reference: Howard et al., "Searching for MobileNetV3" (ICCV 2019). A 3x3 stem
(`conv`), inverted-residual blocks (`expanded_conv_{i}_expand`, `_depthwise`,
`_project`, some with squeeze-and-excite `_squeeze_excite_*`), a 1x1 `conv_1`, and a
top that pools, widens (`conv_2`) and classifies with a 1x1 convolution (`logits`).
Hard-swish replaces ReLU in the later blocks; `minimalistic` models keep ReLU, 3x3
kernels and no squeeze-and-excite.

As in Keras, the network rescales pixels itself (`include_preprocessing=True`: a
`rescaling` layer maps 0..255 to -1..1), so its registry preprocessing is `raw` and a
retrained export applies that scaling once. The activation layers Keras leaves to
its global name counter are named here by block (`expanded_conv_3_expand_activation`).
"""
import warnings

from keras import layers

from kapps import builder_utils
from kapps.mobilenet_v2 import _make_divisible
from kapps.registry import get_model_info, register_model

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
# Published (top, no-top) hashes, keyed as the file names are.
_HASHES = {
    "large_224_0.75_float": ("765b44a33ad4005b3ac83185abf1d0eb",
                             "40af19a13ebea4e2ee0c676887f69a2e"),
    "large_224_1.0_float": ("59e551e166be033d707958cf9e29a6a7",
                            "07fb09a5933dd0c8eaafa16978110389"),
    "large_minimalistic_224_1.0_float": ("675e7b876c45c57e9e63e6d90a36599c",
                                         "ec5221f64a2f6d1ef965a614bdae7973"),
    "small_224_0.75_float": ("cb65d4e5be93758266aa0a7f2c6708b7",
                             "ebdb5cc8e0b497cd13a7c275d475c819"),
    "small_224_1.0_float": ("8768d4c2e7dee89b9d02b2d03d65d862",
                            "d3e8ec802a04aa4fc771ee12a9a9b836"),
    "small_minimalistic_224_1.0_float": ("99cd97fb2fcdad2bf028eb838de69e37",
                                         "cde8136e733e811080d9fcd8a252f7e4"),
}
# Blocks: (expansion, filters, kernel, stride, squeeze-excite, hard-swish). A kernel of
# None is 5x5, or 3x3 in minimalistic models, which also drop squeeze-excite and hard-swish.
_SMALL = ((1, 16, 3, 2, True, False), (72 / 16, 24, 3, 2, False, False),
          (88 / 24, 24, 3, 1, False, False), (4, 40, None, 2, True, True),
          (6, 40, None, 1, True, True), (6, 40, None, 1, True, True),
          (3, 48, None, 1, True, True), (3, 48, None, 1, True, True),
          (6, 96, None, 2, True, True), (6, 96, None, 1, True, True),
          (6, 96, None, 1, True, True))
_LARGE = ((1, 16, 3, 1, False, False), (4, 24, 3, 2, False, False),
          (3, 24, 3, 1, False, False), (3, 40, None, 2, True, False),
          (3, 40, None, 1, True, False), (3, 40, None, 1, True, False),
          (6, 80, 3, 2, False, True), (2.5, 80, 3, 1, False, True),
          (2.3, 80, 3, 1, False, True), (2.3, 80, 3, 1, False, True),
          (6, 112, 3, 1, True, True), (6, 112, 3, 1, True, True),
          (6, 160, None, 2, True, True), (6, 160, None, 1, True, True),
          (6, 160, None, 1, True, True))
# model type -> (blocks, channels of `conv_2`, the widened top)
_TYPES = {"small": (_SMALL, 1024), "large": (_LARGE, 1280)}


def imagenet_file(model_type, alpha, minimalistic, include_top):
    """(file name, hash) of the official weights: one file per type, width and variant."""
    key = f"{model_type}{'_minimalistic' if minimalistic else ''}_224_{float(alpha)}_float"
    top_hash, notop_hash = _HASHES[key]
    if include_top:
        return f"weights_mobilenet_v3_{key}.h5", top_hash
    return f"weights_mobilenet_v3_{key}_no_top_v2.h5", notop_hash


def _bn(x, name):
    return layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=name)(x)


def _activation(x, hard_swish, name):
    if hard_swish:
        return layers.Activation("hard_swish", name=name)(x)
    return layers.ReLU(name=name)(x)


def _squeeze_excite(inputs, filters, prefix):
    x = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}squeeze_excite_avg_pool")(
        inputs)
    x = layers.Conv2D(_make_divisible(filters * 0.25), 1, padding="same",
                      name=f"{prefix}squeeze_excite_conv")(x)
    x = layers.ReLU(name=f"{prefix}squeeze_excite_relu")(x)
    x = layers.Conv2D(filters, 1, padding="same", name=f"{prefix}squeeze_excite_conv_1")(x)
    # relu6(x + 3) / 6, Keras' hard sigmoid as one layer.
    x = layers.Activation("hard_sigmoid", name=f"{prefix}squeeze_excite_hard_sigmoid")(x)
    return layers.Multiply(name=f"{prefix}squeeze_excite_mul")([inputs, x])


def _inverted_residual(x, expansion, filters, kernel, stride, squeeze_excite, hard_swish,
                       block_id):
    inputs, in_channels = x, x.shape[-1]
    prefix = f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = layers.Conv2D(_make_divisible(in_channels * expansion), 1, padding="same",
                          use_bias=False, name=f"{prefix}expand")(x)
        x = _activation(_bn(x, f"{prefix}expand_bn"), hard_swish, f"{prefix}expand_activation")
    if stride == 2:
        # Pad so that the strided window is centred as in TensorFlow's "same".
        rows, cols = x.shape[1:3]
        adjust = (1, 1) if rows is None else (1 - rows % 2, 1 - cols % 2)
        half = kernel // 2
        x = layers.ZeroPadding2D(((half - adjust[0], half), (half - adjust[1], half)),
                                 name=f"{prefix}depthwise_pad")(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, use_bias=False,
                               padding="same" if stride == 1 else "valid",
                               name=f"{prefix}depthwise")(x)
    x = _activation(_bn(x, f"{prefix}depthwise_bn"), hard_swish,
                    f"{prefix}depthwise_activation")
    if squeeze_excite:
        x = _squeeze_excite(x, _make_divisible(in_channels * expansion), prefix)
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}project")(x)
    x = _bn(x, f"{prefix}project_bn")
    if stride == 1 and in_channels == filters:
        return layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def _mobilenet_v3(model_type, include_top, weights, input_tensor, input_shape, pooling,
                  classes, classifier_activation, name, alpha, minimalistic, dropout_rate,
                  include_preprocessing, model_dir):
    info = get_model_info(f"mobilenet_v3_{model_type}")
    builder_utils.check_arguments(info, weights, include_top, classes, pooling,
                                  classifier_activation)
    imagenet_alphas = (1.0,) if minimalistic else (0.75, 1.0)
    if weights == "imagenet" and alpha not in imagenet_alphas:
        raise ValueError(f"With `weights='imagenet'` and minimalistic={minimalistic}, `alpha` "
                         f"must be one of {imagenet_alphas}. Received: alpha={alpha}")
    # The top pools before classifying, so it fits any size, as in keras.applications.
    input_shape = builder_utils.obtain_input_shape(
        input_shape, info.default_size, info.min_size, False, weights)
    if weights == "imagenet" and tuple(input_shape[:2]) != (224, 224):
        warnings.warn(f"No ImageNet weights for input_shape={tuple(input_shape)}; loading "
                      "the 224x224 ones.", stacklevel=3)
    img_input = builder_utils.model_input(input_tensor, input_shape)

    blocks, last_point = _TYPES[model_type]
    x = img_input
    if include_preprocessing:
        x = layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="rescaling")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = _activation(_bn(x, "conv_bn"), not minimalistic, "conv_activation")
    for block_id, (expansion, filters, kernel, stride, se, hswish) in enumerate(blocks):
        x = _inverted_residual(
            x, expansion, _make_divisible(filters * alpha),
            kernel or (3 if minimalistic else 5), stride, se and not minimalistic,
            hswish and not minimalistic, block_id)
    x = layers.Conv2D(_make_divisible(x.shape[-1] * 6), 1, padding="same", use_bias=False,
                      name="conv_1")(x)
    x = _activation(_bn(x, "conv_1_bn"), not minimalistic, "conv_1_activation")
    if include_top:
        # Wider models also widen the top; narrower ones keep its channels.
        if alpha > 1.0:
            last_point = _make_divisible(last_point * alpha)
        x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
        x = layers.Conv2D(last_point, 1, padding="same", name="conv_2")(x)
        x = _activation(x, not minimalistic, "conv_2_activation")
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="dropout")(x)
        x = layers.Conv2D(classes, 1, padding="same", name="logits")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = builder_utils.classifier_top(x, False, pooling, classes, classifier_activation)

    weights_file = (imagenet_file(model_type, alpha, minimalistic, include_top)
                    if weights == "imagenet" else None)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir, weights_file)


_ARGS_DOC = """
    Args:
        include_top: whether to include the pooled top (`conv_2`, `logits`,
            `predictions`). Defaults to `True`.
        weights: `None` (random initialization), `"imagenet"`, or the path to a weights
            file. Defaults to `"imagenet"`.
        input_tensor: optional Keras tensor to use as the input.
        input_shape: (height, width, channels), at least 32x32, any size with or without
            the top (ImageNet weights were trained at 224x224). Defaults to `None`.
        pooling: `None`, `"avg"` or `"max"` pooling of the last feature map when
            `include_top=False`. Defaults to `None`.
        classes: number of classes; 1000 with ImageNet weights and the top.
            Defaults to `1000`.
        classifier_activation: activation of `predictions`; `None` or `"softmax"` with
            ImageNet weights. Defaults to `"softmax"`.
        name: model name.
        alpha: width multiplier; 0.75 or 1.0 with ImageNet weights (1.0 if
            minimalistic). Defaults to `1.0`.
        minimalistic: ReLU, 3x3 kernels and no squeeze-and-excite. Defaults to `False`.
        dropout_rate: dropout before `logits`. Defaults to `0.2`.
        include_preprocessing: rescale 0..255 pixels to -1..1 inside the network; with
            `False`, feed it `kapps.preprocess_input(x, "tf")`. Defaults to `True`.
        model_dir: folder searched first for the official weights file. Defaults to `None`.

    Returns:
        A `keras.Model` that takes RGB pixels in 0..255 (with `include_preprocessing`).
"""


@register_model(
    "mobilenet_v3_small", default_size=224, min_size=32, preprocessing="raw",
    keras_twin="MobileNetV3Small", weights_url=_URL,
    imagenet_files={"top": imagenet_file("small", 1.0, False, True),
                    "notop": imagenet_file("small", 1.0, False, False)})
def MobileNetV3Small(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                     pooling=None, classes=1000, classifier_activation="softmax",
                     name="MobileNetV3Small", alpha=1.0, minimalistic=False, dropout_rate=0.2,
                     include_preprocessing=True, model_dir=None):
    return _mobilenet_v3("small", include_top, weights, input_tensor, input_shape, pooling,
                         classes, classifier_activation, name, alpha, minimalistic,
                         dropout_rate, include_preprocessing, model_dir)


@register_model(
    "mobilenet_v3_large", default_size=224, min_size=32, preprocessing="raw",
    keras_twin="MobileNetV3Large", weights_url=_URL,
    imagenet_files={"top": imagenet_file("large", 1.0, False, True),
                    "notop": imagenet_file("large", 1.0, False, False)})
def MobileNetV3Large(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                     pooling=None, classes=1000, classifier_activation="softmax",
                     name="MobileNetV3Large", alpha=1.0, minimalistic=False, dropout_rate=0.2,
                     include_preprocessing=True, model_dir=None):
    return _mobilenet_v3("large", include_top, weights, input_tensor, input_shape, pooling,
                         classes, classifier_activation, name, alpha, minimalistic,
                         dropout_rate, include_preprocessing, model_dir)


MobileNetV3Small.__doc__ = "Build MobileNetV3 Small.\n" + _ARGS_DOC
MobileNetV3Large.__doc__ = "Build MobileNetV3 Large.\n" + _ARGS_DOC
