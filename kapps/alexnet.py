"""AlexNet in its single-tower form: five convolutions, three dense layers.

References: Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural
Networks" (NeurIPS 2012), and Krizhevsky, "One weird trick for parallelizing
convolutional neural networks" (arXiv:1404.5997, 2014). The 2012 network was split
over two GPUs; the 2014 paper's single-tower version (64, 192, 384, 256, 256 filters)
is the one torchvision and most re-implementations use, and is built here: ReLU
everywhere, max pooling after `conv1`, `conv2` and `conv5`, dropout before `fc6` and
`fc7`. The 2012 paper's local response normalization after `conv1` and `conv2` is an
option, off by default as in those re-implementations (it adds no parameters, and
later work found it adds little accuracy). No official Keras weights exist.
"""
from keras import layers

from kapps import builder_utils
from kapps.normalization import LocalResponseNormalization
from kapps.registry import register_model

# (filters, kernel, stride) of conv1..conv5; pooling follows conv1, conv2 and conv5.
_CONVS = ((64, 11, 4), (192, 5, 1), (384, 3, 1), (256, 3, 1), (256, 3, 1))
_POOLED = {1: "pool1", 2: "pool2", 5: "pool5"}


# 63 px is the smallest input whose third 3x3/2 pooling still has a window to pool.
@register_model("alexnet", default_size=224, min_size=63, preprocessing="torch")
def AlexNet(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
            classes=1000, classifier_activation="softmax", name="alexnet",
            local_response_normalization=False, dropout=0.5, model_dir=None):
    info, img_input = builder_utils.begin("alexnet", weights, include_top, classes, pooling,
                                          classifier_activation, input_tensor, input_shape)

    # torchvision's padding of 2 gives conv1 a 55x55 map at 224 px, as in the paper.
    x = layers.ZeroPadding2D(2, name="conv1_pad")(img_input)
    for i, (filters, kernel, stride) in enumerate(_CONVS, start=1):
        x = layers.Conv2D(filters, kernel, strides=stride, activation="relu",
                          padding="valid" if i == 1 else "same", name=f"conv{i}")(x)
        if local_response_normalization and i <= 2:
            x = LocalResponseNormalization(name=f"lrn{i}")(x)
        if i in _POOLED:
            x = layers.MaxPooling2D(3, strides=2, name=_POOLED[i])(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        for fc in ("fc6", "fc7"):
            x = layers.Dropout(dropout, name=f"{fc}_dropout")(x)
            x = layers.Dense(4096, activation="relu", name=fc)(x)
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation,
                                     flatten_top=True)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir)


AlexNet.__doc__ = builder_utils.builder_doc(
    "Build AlexNet (single tower, 61.1M parameters with the 1000-class top).",
    top="`flatten`, `fc6`, `fc7` and `predictions`", min_size=63,
    with_top="must be `(224, 224, 3)`\n            with the top, whose `fc6` is sized for a 6x6 map.",
    name="alexnet", imagenet=False,
    extra="        local_response_normalization: add the 2012 paper's LRN layers (`lrn1`,\n"
          "            `lrn2`) after the first two convolutions. Defaults to `False`.\n"
          "        dropout: dropout rate before `fc6` and `fc7`. Defaults to `0.5`.\n")
