"""SmallCNN: a VGG-style network with batch normalisation for small pictures (digits, icons).

Three blocks of 3x3 convolutions (32, 64, 128 filters), each convolution followed by
batch normalisation and ReLU, max pooling after the first two blocks, then global
average pooling. The layout follows VGG (Simonyan and Zisserman, "Very Deep
Convolutional Networks for Large-Scale Image Recognition", 2014) at a width that
trains from scratch in a minute or two on a CPU; batch normalisation (Ioffe and
Szegedy, 2015) lets it use LeNet-5's learning rates with more layers.
"""
from keras import layers

from kapps import builder_utils
from kapps.registry import register_model

# (filters, convolutions) per block; blocks but the last end in 2x2 max pooling.
BLOCKS = ((32, 2), (64, 2), (128, 1))
# Keras' default of 0.99 averages over ~100 steps: a short run from scratch (a few hundred
# steps) would keep stale statistics for its first epochs and evaluate badly.
BN_MOMENTUM = 0.9


def _conv_bn_relu(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return layers.Activation("relu", name=name + "_relu")(x)


@register_model("small_cnn", default_size=32, min_size=8, preprocessing="unit",
                feature_pooling="avg")
def SmallCNN(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=10, classifier_activation="softmax", name="small_cnn", model_dir=None):
    info, img_input = builder_utils.begin("small_cnn", weights, include_top, classes, pooling,
                                          classifier_activation, input_tensor, input_shape)

    x = img_input
    for block, (filters, convs) in enumerate(BLOCKS, start=1):
        for conv in range(1, convs + 1):
            x = _conv_bn_relu(x, filters, f"block{block}_conv{conv}")
        if block < len(BLOCKS):
            x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir)


SmallCNN.__doc__ = builder_utils.builder_doc(
    "Build SmallCNN.", top="global average pooling and the `predictions` layer", min_size=8,
    with_top="`(32, 32, 3)` with the top.", name="small_cnn", imagenet=False, classes=10)
