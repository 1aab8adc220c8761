"""ResNet50, layer for layer as `keras.applications` builds it.

Reference: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016).
The original (v1, post-activation) bottleneck design: a 7x7 stem, then four stages
`conv2`..`conv5` of bottleneck blocks named `conv{stage}_block{i}_{j}_{conv,bn,relu}`,
each block ending in `..._add` and `..._out`.
"""
from keras import layers

from kapps import builder_utils
from kapps.registry import register_model

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# Batch-norm epsilon of the original Caffe weights.
_BN_EPSILON = 1.001e-5


def _files(weights_name, top_hash, notop_hash):
    return {
        "top": (f"{weights_name}_weights_tf_dim_ordering_tf_kernels.h5", top_hash),
        "notop": (f"{weights_name}_weights_tf_dim_ordering_tf_kernels_notop.h5", notop_hash),
    }


def _bottleneck(x, filters, stride=1, conv_shortcut=True, name=None):
    """1x1 reduce, 3x3, 1x1 expand (x4), added to the (projected) input."""
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _stage(x, filters, blocks, stride1=2, name=None):
    x = _bottleneck(x, filters, stride=stride1, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = _bottleneck(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
    return x


# The stage depths are an argument so that ResNet101/152 (3, 4, 23, 3 / 3, 8, 36, 3) are
# one registration each; they are left out to keep the test suite fast.
def _resnet(registry_name, stage_blocks, include_top, weights, input_tensor, input_shape,
            pooling, classes, classifier_activation, name, model_dir):
    info, img_input = builder_utils.begin(registry_name, weights, include_top, classes, pooling,
                                          classifier_activation, input_tensor, input_shape)

    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(img_input)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), stage_blocks), start=2):
        x = _stage(x, filters, blocks, stride1=1 if stage == 2 else 2, name=f"conv{stage}")
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir)


@register_model(
    "resnet50", default_size=224, min_size=32, preprocessing="caffe", keras_twin="ResNet50",
    weights_url=_URL,
    imagenet_files=_files("resnet50", "2cb95161c43110f7111970584f804107",
                          "4d473c1dd8becc155b73f8504c6f6626"))
def ResNet50(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax", name="resnet50",
             model_dir=None):
    return _resnet("resnet50", (3, 4, 6, 3), include_top, weights, input_tensor, input_shape,
                   pooling, classes, classifier_activation, name, model_dir)


ResNet50.__doc__ = builder_utils.builder_doc(
    "Build ResNet50 (3, 4, 6, 3 bottleneck blocks per stage).",
    top="`avg_pool` and the `predictions` layer", min_size=32,
    with_top="must be `(224, 224, 3)` with the top.", name="resnet50")
