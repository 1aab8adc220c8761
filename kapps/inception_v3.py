"""InceptionV3, layer for layer as `keras.applications` builds it.

Reference: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision"
(CVPR 2016). A stem of convolutions, then eleven Inception modules whose outputs
are named `mixed0`..`mixed10`.

`keras.applications` leaves the convolution, batch-norm and activation layers to
Keras' global name counter, so their names depend on what was built before. Here
they are numbered per model in the same order (`conv2d`, `conv2d_1`, ...,
`batch_normalization_93`), which is what `keras.applications` gives in a fresh
session: the names are stable, and weight files (matched by layer order) still load.
"""
import itertools

from keras import layers

from kapps import builder_utils
from kapps.registry import register_model

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"


class _ConvBN:
    """Conv2D (no bias) + BatchNorm (no scale) + ReLU, numbered in creation order."""

    def __init__(self):
        self._count = itertools.count()

    def __call__(self, x, filters, rows, cols, padding="same", strides=1):
        i = next(self._count)
        suffix = f"_{i}" if i else ""
        x = layers.Conv2D(filters, (rows, cols), strides=strides, padding=padding,
                          use_bias=False, name=f"conv2d{suffix}")(x)
        x = layers.BatchNormalization(scale=False, name=f"batch_normalization{suffix}")(x)
        return layers.Activation("relu", name=f"activation{suffix}")(x)


def _avg_pool_branch(conv_bn, x, filters):
    branch = layers.AveragePooling2D(3, strides=1, padding="same")(x)
    return conv_bn(branch, filters, 1, 1)


def _body(img_input):
    conv_bn = _ConvBN()
    x = conv_bn(img_input, 32, 3, 3, strides=2, padding="valid")
    x = conv_bn(x, 32, 3, 3, padding="valid")
    x = conv_bn(x, 64, 3, 3)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = conv_bn(x, 80, 1, 1, padding="valid")
    x = conv_bn(x, 192, 3, 3, padding="valid")
    x = layers.MaxPooling2D(3, strides=2)(x)

    # mixed0-2: 35x35 modules (1x1, 5x5, double 3x3, pooled 1x1).
    for i, pool_filters in enumerate((32, 64, 64)):
        branch1x1 = conv_bn(x, 64, 1, 1)
        branch5x5 = conv_bn(conv_bn(x, 48, 1, 1), 64, 5, 5)
        branch3x3dbl = conv_bn(conv_bn(conv_bn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
        branch_pool = _avg_pool_branch(conv_bn, x, pool_filters)
        x = layers.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool],
                               name=f"mixed{i}")

    # mixed3: reduction to 17x17.
    branch3x3 = conv_bn(x, 384, 3, 3, strides=2, padding="valid")
    branch3x3dbl = conv_bn(conv_bn(x, 64, 1, 1), 96, 3, 3)
    branch3x3dbl = conv_bn(branch3x3dbl, 96, 3, 3, strides=2, padding="valid")
    branch_pool = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.concatenate([branch3x3, branch3x3dbl, branch_pool], name="mixed3")

    # mixed4-7: 17x17 modules with factorised 7x7 convolutions.
    for i, width in enumerate((128, 160, 160, 192), start=4):
        branch1x1 = conv_bn(x, 192, 1, 1)
        branch7x7 = conv_bn(x, width, 1, 1)
        branch7x7 = conv_bn(branch7x7, width, 1, 7)
        branch7x7 = conv_bn(branch7x7, 192, 7, 1)
        branch7x7dbl = conv_bn(x, width, 1, 1)
        branch7x7dbl = conv_bn(branch7x7dbl, width, 7, 1)
        branch7x7dbl = conv_bn(branch7x7dbl, width, 1, 7)
        branch7x7dbl = conv_bn(branch7x7dbl, width, 7, 1)
        branch7x7dbl = conv_bn(branch7x7dbl, 192, 1, 7)
        branch_pool = _avg_pool_branch(conv_bn, x, 192)
        x = layers.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool],
                               name=f"mixed{i}")

    # mixed8: reduction to 8x8.
    branch3x3 = conv_bn(conv_bn(x, 192, 1, 1), 320, 3, 3, strides=2, padding="valid")
    branch7x7x3 = conv_bn(conv_bn(conv_bn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1)
    branch7x7x3 = conv_bn(branch7x7x3, 192, 3, 3, strides=2, padding="valid")
    branch_pool = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.concatenate([branch3x3, branch7x7x3, branch_pool], name="mixed8")

    # mixed9-10: 8x8 modules with split 1x3 / 3x1 branches.
    for i in range(2):
        branch1x1 = conv_bn(x, 320, 1, 1)
        branch3x3 = conv_bn(x, 384, 1, 1)
        branch3x3 = layers.concatenate(
            [conv_bn(branch3x3, 384, 1, 3), conv_bn(branch3x3, 384, 3, 1)],
            name=f"mixed9_{i}")
        branch3x3dbl = conv_bn(conv_bn(x, 448, 1, 1), 384, 3, 3)
        branch3x3dbl = layers.concatenate(
            [conv_bn(branch3x3dbl, 384, 1, 3), conv_bn(branch3x3dbl, 384, 3, 1)])
        branch_pool = _avg_pool_branch(conv_bn, x, 192)
        x = layers.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool],
                               name=f"mixed{9 + i}")
    return x


@register_model(
    "inception_v3", default_size=299, min_size=75, preprocessing="tf",
    keras_twin="InceptionV3", weights_url=_URL,
    imagenet_files={
        "top": ("inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                "9a0d58056eeedaa3f26cb7ebd46da564"),
        "notop": ("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  "bcbd6486424b2319ff4ef7d526e38f63"),
    })
def InceptionV3(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="inception_v3", model_dir=None):
    info, img_input = builder_utils.begin("inception_v3", weights, include_top, classes, pooling,
                                          classifier_activation, input_tensor, input_shape)
    x = _body(img_input)
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir)


InceptionV3.__doc__ = builder_utils.builder_doc(
    "Build InceptionV3.", top="`avg_pool` and the `predictions` layer", min_size=75,
    with_top="must be `(299, 299, 3)` with the top.", name="inception_v3")
