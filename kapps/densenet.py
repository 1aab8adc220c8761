"""DenseNet-121, layer for layer as `keras.applications` builds it.

Reference: Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017). A 7x7
stem, then four dense blocks `conv2`..`conv5` (6, 12, 24, 16 layers), each layer a
batch-norm, ReLU, 1x1 and 3x3 convolution whose 32 new channels are concatenated to
its input (`conv{stage}_block{i}_concat`); transition blocks `pool2`..`pool4` halve
the channels and the map between them. `keras.applications` leaves the two stem
paddings unnamed; here they are `conv1_pad` and `pool1_pad`, as in ResNet50.
"""
from keras import layers

from kapps import builder_utils
from kapps.registry import register_model

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
# Batch-norm epsilon of the original Torch weights.
_BN_EPSILON = 1.001e-5
_GROWTH_RATE = 32


def _bn_relu(x, name):
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _dense_layer(x, name):
    """BN-ReLU-1x1 (4 x growth) and BN-ReLU-3x3 (growth), concatenated to the input."""
    y = _bn_relu(x, f"{name}_0")
    y = layers.Conv2D(4 * _GROWTH_RATE, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_1")
    y = layers.Conv2D(_GROWTH_RATE, 3, padding="same", use_bias=False,
                      name=f"{name}_2_conv")(y)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def _transition(x, name):
    """BN-ReLU, a 1x1 convolution to half the channels, 2x2 average pooling."""
    x = _bn_relu(x, name)
    x = layers.Conv2D(x.shape[-1] // 2, 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


@register_model(
    "densenet121", default_size=224, min_size=32, preprocessing="torch",
    keras_twin="DenseNet121", weights_url=_URL,
    imagenet_files={
        "top": ("densenet121_weights_tf_dim_ordering_tf_kernels.h5",
                "9d60b8095a5708f2dcce2bca79d332c7"),
        "notop": ("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  "30ee3e1110167f948a6b9946edeeb738"),
    })
def DenseNet121(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="densenet121", model_dir=None):
    info, img_input = builder_utils.begin("densenet121", weights, include_top, classes, pooling,
                                          classifier_activation, input_tensor, input_shape)

    x = layers.ZeroPadding2D(3, name="conv1_pad")(img_input)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _bn_relu(x, "conv1")
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, blocks in enumerate((6, 12, 24, 16), start=2):
        for i in range(1, blocks + 1):
            x = _dense_layer(x, f"conv{stage}_block{i}")
        if stage < 5:
            x = _transition(x, f"pool{stage}")
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir)


DenseNet121.__doc__ = builder_utils.builder_doc(
    "Build DenseNet-121.", top="`avg_pool` and the `predictions` layer", min_size=32,
    with_top="must be `(224, 224, 3)` with the top.", name="densenet121")
