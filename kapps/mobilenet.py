"""MobileNet (v1), layer for layer as `keras.applications` builds it.

Reference: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications" (arXiv:1704.04861, 2017). A 3x3 stem (`conv1`), then
13 depthwise-separable blocks (`conv_dw_{i}` + `conv_pw_{i}`, each with BN and ReLU6).
The width multiplier `alpha` scales every layer's filters; ImageNet weights exist
for four widths at four input sizes, each in its own file.
"""
import warnings

from keras import layers

from kapps import builder_utils
from kapps.registry import get_model_info, register_model

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
IMAGENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)
IMAGENET_SIZES = (128, 160, 192, 224)
# (pointwise filters, stride) of the 13 depthwise-separable blocks.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
           (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def imagenet_file(alpha, size, include_top):
    """(file name, hash) of the official weights for width `alpha` at input `size`.

    Upstream publishes no hash for these files (keras.applications downloads them
    unchecked), so the hash is `None` rather than a value nobody verified.
    """
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    suffix = "" if include_top else "_no_top"
    return f"mobilenet_{alpha_text}_{size}_tf{suffix}.h5", None


def imagenet_size(input_shape, sizes=IMAGENET_SIZES):
    """Input size whose weights file serves `input_shape`: its side if square and one
    of `sizes`, else 224 (convolution weights do not depend on the input size)."""
    rows, cols = input_shape[0], input_shape[1]
    return rows if rows == cols and rows in sizes else 224


def weights_size(input_shape, sizes=IMAGENET_SIZES):
    """`imagenet_size`, warning when the file was trained at another size."""
    size = imagenet_size(input_shape, sizes)
    if tuple(input_shape[:2]) != (size, size):
        warnings.warn(f"No ImageNet weights for input_shape={tuple(input_shape)}; loading "
                      f"the {size}x{size} ones.", stacklevel=3)
    return size


def _separable_block(x, filters, stride, depth_multiplier, block_id):
    if stride == 1:
        padding = "same"
    else:
        # TensorFlow-style asymmetric padding, as the weights were trained with.
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
        padding = "valid"
    x = layers.DepthwiseConv2D(3, padding=padding, depth_multiplier=depth_multiplier,
                               strides=stride, use_bias=False, name=f"conv_dw_{block_id}")(x)
    x = layers.BatchNormalization(name=f"conv_dw_{block_id}_bn")(x)
    x = layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False,
                      name=f"conv_pw_{block_id}")(x)
    x = layers.BatchNormalization(name=f"conv_pw_{block_id}_bn")(x)
    return layers.ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)


@register_model(
    "mobilenet", default_size=224, min_size=32, preprocessing="tf", keras_twin="MobileNet",
    weights_url=_URL,
    imagenet_files={"top": imagenet_file(1.0, 224, True),
                    "notop": imagenet_file(1.0, 224, False)})
def MobileNet(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax", name=None,
              alpha=1.0, depth_multiplier=1, dropout=1e-3, model_dir=None):
    info = get_model_info("mobilenet")
    builder_utils.check_arguments(info, weights, include_top, classes, pooling,
                                  classifier_activation)
    if weights == "imagenet" and depth_multiplier != 1:
        raise ValueError("With `weights='imagenet'`, `depth_multiplier` must be 1. "
                         f"Received: depth_multiplier={depth_multiplier}")
    if weights == "imagenet" and alpha not in IMAGENET_ALPHAS:
        raise ValueError(f"With `weights='imagenet'`, `alpha` must be one of {IMAGENET_ALPHAS}. "
                         f"Received: alpha={alpha}")
    # With a square published size the top is built for it, as keras.applications does.
    default_size = info.default_size if input_shape is None else imagenet_size(input_shape)
    input_shape = builder_utils.obtain_input_shape(
        input_shape, default_size, info.min_size, include_top, weights)
    img_input = builder_utils.model_input(input_tensor, input_shape)

    x = layers.Conv2D(int(32 * alpha), 3, padding="same", use_bias=False, strides=2,
                      name="conv1")(img_input)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for block_id, (filters, stride) in enumerate(_BLOCKS, start=1):
        x = _separable_block(x, int(filters * alpha), stride, depth_multiplier, block_id)
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Conv2D(classes, 1, padding="same", name="conv_preds")(x)
        x = layers.Reshape((classes,), name="reshape_2")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = builder_utils.classifier_top(x, False, pooling, classes, classifier_activation)

    rows, weights_file = input_shape[0], None
    if weights == "imagenet":
        rows = weights_size(input_shape)
        weights_file = imagenet_file(alpha, rows, include_top)
    return builder_utils.finish_model(info, img_input, input_tensor, x,
                                      name or f"mobilenet_{alpha:0.2f}_{rows}", weights,
                                      include_top, model_dir, weights_file)


MobileNet.__doc__ = builder_utils.builder_doc(
    "Build MobileNet.", top="the pooled `conv_preds` classifier and `predictions`",
    min_size=32, with_top="with the top, a square\n            128, 160, 192 or 224 side, "
    "else `(224, 224, 3)`.", name="mobilenet_{alpha:0.2f}_{rows}",
    notes="Unlike `keras.applications.MobileNet`, `input_shape` is not the first positional\n"
          "    argument: every kapps builder starts with `include_top, weights`.\n",
    extra="        alpha: width multiplier; 0.25, 0.5, 0.75 or 1.0 with ImageNet weights.\n"
          "            Defaults to `1.0`.\n"
          "        depth_multiplier: depthwise channel multiplier; 1 with ImageNet weights.\n"
          "            Defaults to `1`.\n"
          "        dropout: dropout rate before the classifier. Defaults to `1e-3`.\n")
