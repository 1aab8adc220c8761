"""What every builder shares: argument checks, the input layer, the classifier top, weights.

Each builder only writes its own body; the rules that `keras.applications` enforces
(and their error messages) live here once.
"""
import os

import keras
from keras import layers

from kapps.weights import load_weights


def check_arguments(info, weights, include_top, classes, pooling, classifier_activation):
    """Reject bad arguments before anything is built, stating the rule and the value."""
    if not (weights in {"imagenet", None} or os.path.isfile(str(weights))):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), "
            "'imagenet' (pre-training on ImageNet), or the path to the weights file to be "
            f"loaded. Received: weights={weights!r}")
    if weights == "imagenet" and not info.imagenet_files:
        raise ValueError(
            f"{info.name} has no ImageNet weights. Received: weights='imagenet'; use "
            "weights=None or the path of your own weights file.")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "If using `weights='imagenet'` with `include_top=True`, `classes` should be 1000. "
            f"Received: classes={classes}")
    if weights == "imagenet" and include_top and classifier_activation not in (None, "softmax"):
        raise ValueError(
            "With `weights='imagenet'` and `include_top=True`, `classifier_activation` must be "
            f"None or 'softmax'. Received: classifier_activation={classifier_activation!r}")
    if not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            f"`pooling` must be one of None, 'avg', 'max'. Received: pooling={pooling!r}")
    if classifier_activation is not None and not isinstance(classifier_activation, str) \
            and not callable(classifier_activation):
        raise ValueError(
            "`classifier_activation` must be None, a name such as 'softmax', or a callable. "
            f"Received: classifier_activation={classifier_activation!r}")


def obtain_input_shape(input_shape, default_size, min_size, require_flatten, weights,
                       channels=3):
    """The (height, width, channels) input shape, checked as keras.applications checks it.

    With ImageNet weights the channel count must be 3; with the classifier top
    (`require_flatten`) the size must be the default one, because the dense layers
    are sized for it.
    """
    default_shape = (default_size, default_size, channels)
    if input_shape is None:
        return default_shape if require_flatten or weights == "imagenet" else (None, None, channels)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be a tuple of three integers (height, width, channels). "
            f"Received: input_shape={input_shape}")
    if weights == "imagenet" and input_shape[-1] != 3:
        raise ValueError(
            "With `weights='imagenet'` the input must have 3 channels. "
            f"Received: input_shape={input_shape}")
    for side in input_shape[:2]:
        if side is not None and side < min_size:
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size}. "
                f"Received: input_shape={input_shape}")
    if require_flatten and input_shape[:2] != default_shape[:2]:
        raise ValueError(
            f"When setting `include_top=True`, `input_shape` should be {default_shape}. "
            f"Received: input_shape={input_shape}")
    return input_shape


def model_input(input_tensor, input_shape):
    """The input tensor the body starts from: `input_tensor` if given, else a new `Input`."""
    if input_tensor is None:
        return keras.Input(shape=input_shape)
    if not keras.backend.is_keras_tensor(input_tensor):
        return keras.Input(tensor=input_tensor, shape=input_shape)
    return input_tensor


def begin(name, weights, include_top, classes, pooling, classifier_activation, input_tensor,
          input_shape):
    """What every plain builder does first: its registry entry, the argument checks, and
    the input tensor its body starts from. Returns `(info, img_input)`."""
    from kapps.registry import get_model_info

    info = get_model_info(name)
    check_arguments(info, weights, include_top, classes, pooling, classifier_activation)
    input_shape = obtain_input_shape(input_shape, info.default_size, info.min_size, include_top,
                                     weights, channels=info.channels)
    return info, model_input(input_tensor, input_shape)


def classifier_top(x, include_top, pooling, classes, classifier_activation, flatten_top=False):
    """Global pooling plus `predictions` (or just the optional pooling without the top)."""
    if include_top:
        if not flatten_top:
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D()(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D()(x)
    return x


def finish_model(info, inputs, input_tensor, outputs, name, weights, include_top, model_dir,
                 imagenet_file=None):
    """Wrap the graph into a `keras.Model` and load its weights.

    `imagenet_file` overrides the registry's `(file name, hash)` where the official
    file depends on the builder's arguments (MobileNet width and input size).
    """
    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    model = keras.Model(inputs, outputs, name=name)
    return load_weights(model, info, weights, include_top, model_dir, imagenet_file)


_DOC_TEMPLATE = """{summary}
{notes}
    Args:
        include_top: whether to include {top}.
            Defaults to `True`.
        weights: {weights}
        input_tensor: optional Keras tensor to use as the input.
        input_shape: (height, width, channels), at least {min_size}x{min_size}; {with_top}
            Defaults to `None`.
        pooling: `None`, `"avg"` or `"max"` pooling of the last feature map when
            `include_top=False`. Defaults to `None`.
        classes: number of classes{classes_rule}.
            Defaults to `{classes}`.
        classifier_activation: activation of `predictions`{activation_rule}.
            Defaults to `"softmax"`.
        name: model name. Defaults to `"{name}"`.
{extra}        model_dir: {model_dir}

    Returns:
        A `keras.Model`.
"""


def builder_doc(summary, *, top, min_size, with_top, name, imagenet=True, classes=1000,
                notes="", extra=""):
    """The docstring of a builder: the `keras.applications` arguments, written once.

    Each builder states only what differs (what the top holds, the sizes, its extra
    arguments, as indented `Args:` lines in `extra`), as Keras' `resnet.py` does with
    its base docstring.
    """
    if imagenet:
        weights = ('`None` (random initialization), `"imagenet"`, or the path to a weights\n'
                   '            file. Defaults to `"imagenet"`.')
        model_dir = "folder searched first for the official weights file. Defaults to `None`."
    else:
        weights = ("`None` or the path to a weights file (no ImageNet weights exist).\n"
                   "            Defaults to `None`.")
        model_dir = "unused (no official weights); accepted for a uniform signature."
    return _DOC_TEMPLATE.format(
        summary=summary, notes=f"\n    {notes.rstrip()}\n" if notes else "", top=top,
        min_size=min_size, with_top=with_top, name=name, classes=classes, extra=extra,
        weights=weights, model_dir=model_dir,
        classes_rule="; 1000 with ImageNet weights and the top" if imagenet else "",
        activation_rule=('; `None` or `"softmax"`\n            with ImageNet weights'
                         if imagenet else ""))
