"""MobileNetV2, layer for layer as `keras.applications` builds it.

Reference: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
(CVPR 2018). A 3x3 stem (`Conv1`), 17 inverted-residual blocks (`block_{i}_expand`,
`block_{i}_depthwise`, `block_{i}_project`, the first named `expanded_conv_`), and a
1x1 `Conv_1` to 1280 channels. ImageNet weights exist for six widths `alpha` at five
input sizes, each in its own file.

`mobilenet_v2_torchvision` is torchvision's variant of the same network, built so its
published ImageNet weights give torchvision's answers: every stride-2 3x3 convolution
padded by one pixel on all sides (Keras pads one side), BatchNorm epsilon 1e-5 (Keras
1e-3), ImageNet mean/std preprocessing (`torch`), and dropout before the classifier.
Same layer names, so fine-tuning and `--base_layer` work alike on both.
"""
from keras import layers

from kapps import builder_utils, torchvision_weights
from kapps.mobilenet import imagenet_size, weights_size
from kapps.registry import get_model_info, register_model
from kapps.weights import load_weights

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)
# (output filters, stride, expansion) of the 17 inverted-residual blocks.
_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
           (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
           (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))


def imagenet_file(alpha, size, include_top):
    """(file name, hash) of the official weights for width `alpha` at input `size`.

    Upstream publishes no hash for these files (keras.applications downloads them
    unchecked), so the hash is `None` rather than a value nobody verified.
    """
    suffix = "" if include_top else "_no_top"
    return (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}{suffix}.h5",
            None)


def _make_divisible(value, divisor=8):
    """Round a channel count to a multiple of `divisor`, never more than 10% down."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new_value + divisor if new_value < 0.9 * value else new_value


class _Flavour:
    """What differs between Keras' network and torchvision's."""

    def __init__(self, torchvision):
        self.torchvision = torchvision
        # torch's BatchNorm: epsilon 1e-5, running statistics updated by 0.1 (Keras' 0.9).
        self.epsilon, self.momentum = (1e-5, 0.9) if torchvision else (1e-3, 0.999)

    def bn(self, x, name):
        return layers.BatchNormalization(epsilon=self.epsilon, momentum=self.momentum,
                                         name=name)(x)

    def pad(self, x, name):
        """Padding before a stride-2 3x3 convolution: torch's one pixel on every side, or
        Keras' that centres the window as TensorFlow's "same" does."""
        if self.torchvision:
            return layers.ZeroPadding2D(1, name=name)(x)
        rows, cols = x.shape[1:3]
        adjust = (1, 1) if rows is None else (1 - rows % 2, 1 - cols % 2)
        return layers.ZeroPadding2D(((1 - adjust[0], 1), (1 - adjust[1], 1)), name=name)(x)


def _inverted_residual(x, filters, stride, expansion, alpha, block_id, flavour):
    inputs, in_channels = x, x.shape[-1]
    out_channels = _make_divisible(int(filters * alpha))
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = layers.Conv2D(expansion * in_channels, 1, padding="same", use_bias=False,
                          name=f"{prefix}expand")(x)
        x = layers.ReLU(6.0, name=f"{prefix}expand_relu")(flavour.bn(x, f"{prefix}expand_BN"))
    if stride == 2:
        x = flavour.pad(x, f"{prefix}pad")
    x = layers.DepthwiseConv2D(3, strides=stride, use_bias=False,
                               padding="same" if stride == 1 else "valid",
                               name=f"{prefix}depthwise")(x)
    x = layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(
        flavour.bn(x, f"{prefix}depthwise_BN"))
    x = layers.Conv2D(out_channels, 1, padding="same", use_bias=False,
                      name=f"{prefix}project")(x)
    x = flavour.bn(x, f"{prefix}project_BN")
    if in_channels == out_channels and stride == 1:
        return layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def _features(img_input, alpha, flavour):
    """The network from the stem to `out_relu` (the last feature map)."""
    x = img_input
    if flavour.torchvision:
        x = flavour.pad(x, "Conv1_pad")
    x = layers.Conv2D(_make_divisible(32 * alpha), 3, strides=2,
                      padding="valid" if flavour.torchvision else "same",
                      use_bias=False, name="Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(flavour.bn(x, "bn_Conv1"))
    for block_id, (filters, stride, expansion) in enumerate(_BLOCKS):
        x = _inverted_residual(x, filters, stride, expansion, alpha, block_id, flavour)
    # Wider models also widen the last layer; narrower ones keep 1280 features.
    last_filters = _make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = layers.Conv2D(last_filters, 1, use_bias=False, name="Conv_1")(x)
    return layers.ReLU(6.0, name="out_relu")(flavour.bn(x, "Conv_1_bn"))


@register_model(
    "mobilenet_v2", default_size=224, min_size=32, preprocessing="tf",
    keras_twin="MobileNetV2", weights_url=_URL,
    imagenet_files={"top": imagenet_file(1.0, 224, True),
                    "notop": imagenet_file(1.0, 224, False)})
def MobileNetV2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax", name=None,
                alpha=1.0, model_dir=None):
    info = get_model_info("mobilenet_v2")
    builder_utils.check_arguments(info, weights, include_top, classes, pooling,
                                  classifier_activation)
    if weights == "imagenet" and alpha not in IMAGENET_ALPHAS:
        raise ValueError(f"With `weights='imagenet'`, `alpha` must be one of {IMAGENET_ALPHAS}. "
                         f"Received: alpha={alpha}")
    # With a square published size the top is built for it, as keras.applications does.
    default_size = (info.default_size if input_shape is None
                    else imagenet_size(input_shape, IMAGENET_SIZES))
    input_shape = builder_utils.obtain_input_shape(
        input_shape, default_size, info.min_size, include_top, weights)
    img_input = builder_utils.model_input(input_tensor, input_shape)

    x = _features(img_input, alpha, _Flavour(torchvision=False))
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation)

    rows, weights_file = input_shape[0], None
    if weights == "imagenet":
        rows = weights_size(input_shape, IMAGENET_SIZES)
        weights_file = imagenet_file(alpha, rows, include_top)
    return builder_utils.finish_model(info, img_input, input_tensor, x,
                                      name or f"mobilenetv2_{alpha:0.2f}_{rows}", weights,
                                      include_top, model_dir, weights_file)


MobileNetV2.__doc__ = builder_utils.builder_doc(
    "Build MobileNetV2.", top="global pooling and the `predictions` layer", min_size=32,
    with_top="with the top, a square\n            96, 128, 160, 192 or 224 side, else "
    "`(224, 224, 3)`.", name="mobilenetv2_{alpha:0.2f}_{rows}",
    notes="Unlike `keras.applications.MobileNetV2`, `input_shape` is not the first positional\n"
          "    argument: every kapps builder starts with `include_top, weights`.\n",
    extra="        alpha: width multiplier; 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4 with ImageNet\n"
          "            weights. Defaults to `1.0`.\n")


@register_model(
    "mobilenet_v2_torchvision", default_size=224, min_size=32, preprocessing="torch",
    weights_url=torchvision_weights.URL.rsplit("/", 1)[0] + "/",
    imagenet_files={"top": (torchvision_weights.FILE_NAME, torchvision_weights.SHA256),
                    "notop": (torchvision_weights.FILE_NAME, torchvision_weights.SHA256)})
def MobileNetV2Torchvision(include_top=True, weights="imagenet", input_tensor=None,
                           input_shape=None, pooling=None, classes=1000,
                           classifier_activation="softmax", name=None, alpha=1.0,
                           model_dir=None):
    info = get_model_info("mobilenet_v2_torchvision")
    weights = "imagenet" if weights == "torchvision" else weights
    builder_utils.check_arguments(info, weights, include_top, classes, pooling,
                                  classifier_activation)
    if weights == "imagenet" and alpha != 1.0:
        raise ValueError("torchvision publishes ImageNet weights for `alpha=1.0` only. "
                         f"Received: alpha={alpha}")
    input_shape = builder_utils.obtain_input_shape(
        input_shape, info.default_size, info.min_size, include_top, weights)
    img_input = builder_utils.model_input(input_tensor, input_shape)
    x = _features(img_input, alpha, _Flavour(torchvision=True))
    if include_top:  # torchvision's classifier: Dropout(0.2), then Linear
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.2, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = builder_utils.classifier_top(x, False, pooling, classes, classifier_activation)
    model = builder_utils.finish_model(
        info, img_input, input_tensor, x, name or f"mobilenetv2_torchvision_{input_shape[0]}",
        None, include_top, model_dir)
    if weights == "imagenet":
        return torchvision_weights.load_file(model, torchvision_weights.find_file(model_dir))
    if weights is not None and str(weights).lower().endswith(".pth"):
        return torchvision_weights.load_file(model, str(weights))
    return load_weights(model, info, weights, include_top, model_dir)


MobileNetV2Torchvision.__doc__ = builder_utils.builder_doc(
    "Build torchvision's MobileNetV2, which gives torchvision's answers with its weights.",
    top="global pooling, dropout and the `predictions` layer", min_size=32,
    with_top="with the top,\n            `(224, 224, 3)`.", name="mobilenetv2_torchvision_{rows}",
    notes="Feed it pixels preprocessed in `torch` mode (`kapps.preprocess_input(x, \"torch\")`).\n"
          "    `weights=\"imagenet\"` (or `\"torchvision\"`) loads torchvision's ImageNet file\n"
          "    (`kapps.torchvision_weights` says where it is looked for); a `.pth` path loads a\n"
          "    state dict of the same network, read without torch.\n",
    extra="        alpha: width multiplier; 1.0 with ImageNet weights. Defaults to `1.0`.\n")
