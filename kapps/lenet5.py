"""LeNet-5 for small inputs such as handwritten digits.

Reference: LeCun et al., "Gradient-Based Learning Applied to Document Recognition" (1998).
Kept to the paper's shape (two convolutions with pooling, then 120-84-classes dense
layers) with ReLU activations; the first convolution pads, so 28 px MNIST-style and
smaller inputs work as well as the original 32 px.
"""
from keras import layers

from kapps import builder_utils
from kapps.registry import register_model


@register_model("lenet5", default_size=32, min_size=12, preprocessing="unit",
                feature_pooling="flatten")
def LeNet5(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
           classes=10, classifier_activation="softmax", name="lenet5", model_dir=None):
    info, img_input = builder_utils.begin("lenet5", weights, include_top, classes, pooling,
                                          classifier_activation, input_tensor, input_shape)

    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(img_input)
    x = layers.AveragePooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = layers.AveragePooling2D(2, name="pool2")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(120, activation="relu", name="fc1")(x)
        x = layers.Dense(84, activation="relu", name="fc2")(x)
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation,
                                     flatten_top=True)
    return builder_utils.finish_model(info, img_input, input_tensor, x, name, weights,
                                      include_top, model_dir)


LeNet5.__doc__ = builder_utils.builder_doc(
    "Build LeNet-5.", top="the 120-84-`classes` dense layers", min_size=12,
    with_top="`(32, 32, 3)` with the top.", name="lenet5", imagenet=False, classes=10)
