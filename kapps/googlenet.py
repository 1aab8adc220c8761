"""GoogLeNet (Inception v1), as the paper's table 1 draws it.

Reference: Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015). A stem of
convolutions, then nine Inception modules (`inception_3a`..`inception_5b`), each the
concatenation of a 1x1 convolution, a 1x1 reduction then 3x3, a 1x1 reduction then
5x5, and a 3x3 max pooling then 1x1 projection; global average pooling, 40% dropout
and `predictions`. Layer names are those of the BVLC Caffe model (`/` written `_`).

Every convolution has a bias and a ReLU, as in the paper (no batch normalization); its
local response normalization in the stem is an option, off by default. The two
auxiliary classifiers (after `inception_4a` and `inception_4d`) exist only to train:
`aux_logits=True` gives a three-output model, by default they are absent. Unlike
torchvision's GoogLeNet, the "5x5" branch really is 5x5 (torchvision's is 3x3, a bug it
keeps for its weights). No official Keras weights exist.
"""
from keras import layers

from kapps import builder_utils
from kapps.normalization import LocalResponseNormalization
from kapps.registry import get_model_info, register_model

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
_MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Modules after which a 3x3/2 max pooling halves the map, and the pooling's name.
_POOL_AFTER = {"3b": "pool3_3x3_s2", "4e": "pool4_3x3_s2"}
# Modules whose output feeds an auxiliary classifier.
_AUX_AFTER = {"4a": "loss1", "4d": "loss2"}


def _conv(x, filters, kernel, name, strides=1):
    return layers.Conv2D(filters, kernel, strides=strides, padding="same", activation="relu",
                         name=name)(x)


def _inception(x, name, filters):
    n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj = filters
    prefix = f"inception_{name}_"
    branch1x1 = _conv(x, n1x1, 1, f"{prefix}1x1")
    branch3x3 = _conv(_conv(x, n3x3red, 1, f"{prefix}3x3_reduce"), n3x3, 3, f"{prefix}3x3")
    branch5x5 = _conv(_conv(x, n5x5red, 1, f"{prefix}5x5_reduce"), n5x5, 5, f"{prefix}5x5")
    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{prefix}pool")(x)
    branch_pool = _conv(branch_pool, pool_proj, 1, f"{prefix}pool_proj")
    return layers.Concatenate(name=f"{prefix}output")(
        [branch1x1, branch3x3, branch5x5, branch_pool])


def _aux_classifier(x, name, classes, classifier_activation):
    """The paper's auxiliary head: 5x5/3 average pooling (4x4 at 224 px), 1x1 conv to 128,
    fc 1024, 70% dropout, and a softmax over the classes."""
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_ave_pool")(x)
    x = _conv(x, 128, 1, f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_drop_fc")(x)
    return layers.Dense(classes, activation=classifier_activation, name=f"{name}_classifier")(x)


@register_model("googlenet", default_size=224, min_size=32, preprocessing="torch")
def GoogLeNet(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax", name="googlenet",
              aux_logits=False, local_response_normalization=False, dropout=0.4,
              model_dir=None):
    info = get_model_info("googlenet")
    builder_utils.check_arguments(info, weights, include_top, classes, pooling,
                                  classifier_activation)
    if aux_logits and not include_top:
        raise ValueError("`aux_logits=True` adds classifiers, so it needs `include_top=True`. "
                         f"Received: aux_logits={aux_logits}, include_top={include_top}")
    input_shape = builder_utils.obtain_input_shape(
        input_shape, info.default_size, info.min_size, include_top, weights)
    img_input = builder_utils.model_input(input_tensor, input_shape)

    x = _conv(img_input, 64, 7, "conv1_7x7_s2", strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)
    if local_response_normalization:
        x = LocalResponseNormalization(name="pool1_norm1")(x)
    x = _conv(x, 64, 1, "conv2_3x3_reduce")
    x = _conv(x, 192, 3, "conv2_3x3")
    if local_response_normalization:
        x = LocalResponseNormalization(name="conv2_norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)
    aux_outputs = []
    for module, filters in _MODULES.items():
        x = _inception(x, module, filters)
        if aux_logits and module in _AUX_AFTER:
            aux_outputs.append(_aux_classifier(x, _AUX_AFTER[module], classes,
                                               classifier_activation))
        if module in _POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=_POOL_AFTER[module])(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
    x = builder_utils.classifier_top(x, include_top, pooling, classes, classifier_activation,
                                     flatten_top=True)
    outputs = [x] + aux_outputs if aux_logits else x
    return builder_utils.finish_model(info, img_input, input_tensor, outputs, name, weights,
                                      include_top, model_dir)


GoogLeNet.__doc__ = builder_utils.builder_doc(
    "Build GoogLeNet (Inception v1).", top="`avg_pool`, `dropout` and `predictions`",
    min_size=32, with_top="must be `(224, 224, 3)` with the top.", name="googlenet",
    imagenet=False,
    extra="        aux_logits: add the two auxiliary classifiers, for training: the model then\n"
          "            has three outputs, `[predictions, loss1_classifier, loss2_classifier]`\n"
          "            (weigh the auxiliary losses by 0.3, as the paper does). Needs\n"
          "            `include_top=True`. Defaults to `False`.\n"
          "        local_response_normalization: add the paper's LRN layers (`pool1_norm1`,\n"
          "            `conv2_norm2`) to the stem. Defaults to `False`.\n"
          "        dropout: dropout rate before `predictions`. Defaults to `0.4`.\n")
