"""VGG16 and VGG19, layer for layer as `keras.applications` builds them.

Reference: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition" (ICLR 2015). Both depths share one body: five blocks of 3x3
convolutions (`block{b}_conv{i}`) each closed by 2x2 max pooling (`block{b}_pool`),
then `fc1`, `fc2` and `predictions` with the top.
"""
from keras import layers

from kapps import builder_utils
from kapps.registry import register_model

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/{family}/"
# Filters and convolutions per block.
_VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
_VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def _vgg(registry_name, blocks, include_top, weights, input_tensor, input_shape, pooling,
         classes, classifier_activation, name, model_dir):
    info, img_input = builder_utils.begin(registry_name, weights, include_top, classes, pooling,
                                          classifier_activation, input_tensor, input_shape)

    x = img_input
    for block, (filters, convs) in enumerate(blocks, start=1):
        for conv in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, activation="relu", padding="same",
                              name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation,
                                     flatten_top=True)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir)


@register_model(
    "vgg16", default_size=224, min_size=32, preprocessing="caffe", keras_twin="VGG16",
    weights_url=_URL.format(family="vgg16"),
    imagenet_files={
        "top": ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                "64373286793e3c8b2b4e3219cbf3544b"),
        "notop": ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  "6d6bbae143d832006294945121d1f1fc"),
    })
def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg16",
          model_dir=None):
    return _vgg("vgg16", _VGG16_BLOCKS, include_top, weights, input_tensor, input_shape,
                pooling, classes, classifier_activation, name, model_dir)


@register_model(
    "vgg19", default_size=224, min_size=32, preprocessing="caffe", keras_twin="VGG19",
    weights_url=_URL.format(family="vgg19"),
    imagenet_files={
        "top": ("vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                "cbe5617147190e668d6c5d5026f83318"),
        "notop": ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  "253f8cb515780f3b799900260a226db6"),
    })
def VGG19(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg19",
          model_dir=None):
    return _vgg("vgg19", _VGG19_BLOCKS, include_top, weights, input_tensor, input_shape,
                pooling, classes, classifier_activation, name, model_dir)




VGG16.__doc__ = builder_utils.builder_doc(
    "Build VGG16 (13 convolutions, 3 dense layers).",
    top="`flatten`, `fc1`, `fc2` and `predictions`", min_size=32,
    with_top="must be `(224, 224, 3)` with the top.", name="vgg16")


VGG19.__doc__ = builder_utils.builder_doc(
    "Build VGG19 (16 convolutions, 3 dense layers).",
    top="`flatten`, `fc1`, `fc2` and `predictions`", min_size=32,
    with_top="must be `(224, 224, 3)` with the top.", name="vgg19")
