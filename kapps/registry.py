"""The model registry: one entry per architecture, with what a user needs to feed it.

Builders register themselves with `@register_model(...)`; `create_model(name)` and
`list_models()` are the only ways the rest of kapps looks models up, so a new
architecture is one file and one decorator.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

# Every module with builders; importing one registers its architectures.
BUILDER_MODULES = ("kapps.lenet5", "kapps.small_cnn", "kapps.vgg16", "kapps.inception_v3",
                   "kapps.mobilenet", "kapps.mobilenet_v2", "kapps.resnet50", "kapps.alexnet",
                   "kapps.googlenet", "kapps.densenet", "kapps.mobilenet_v3")

# Weight files: {"top": (file name, md5), "notop": (file name, md5)}: Keras publishes the
# 32-hex MD5 of each official file (`keras.utils.get_file` checks it; None: not published).
WeightFiles = Dict[str, Tuple[str, str]]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture.

    Attributes:
        name: lower-case registry name, e.g. `mobilenet_v2`.
        builder: the functional-API builder (keras.applications signature).
        default_size: input side in pixels the architecture was designed for.
        min_size: smallest input side the builder accepts.
        preprocessing: mode understood by `kapps.preprocessing` (`caffe`, `tf`, `torch`,
            `unit`, or `raw` for networks that rescale pixels themselves).
        keras_twin: name of the matching `keras.applications` builder, if any.
        weights_url: folder URL the official weight files are downloaded from.
        imagenet_files: official ImageNet weight files, keyed `top` / `notop`.
        channels: input channels at the default size.
        feature_pooling: how retraining turns the last feature map into a vector:
            `avg` (global average pooling) or `flatten` (small maps, e.g. LeNet-5).
    """

    name: str
    builder: Callable
    default_size: int
    min_size: int
    preprocessing: str
    keras_twin: Optional[str] = None
    weights_url: str = ""
    imagenet_files: WeightFiles = field(default_factory=dict)
    channels: int = 3
    feature_pooling: str = "avg"


_REGISTRY: Dict[str, ModelInfo] = {}


def register_model(name, *, default_size, min_size, preprocessing, keras_twin=None,
                   weights_url="", imagenet_files=None, channels=3, feature_pooling="avg"):
    """Decorator that records a builder under `name` in the registry.

    A name already taken by another builder is refused: a silent overwrite would make
    `create_model(name)` build something else depending on import order.
    """

    def wrap(builder):
        taken = _REGISTRY.get(name)
        if taken is not None and (taken.builder.__module__, taken.builder.__qualname__) != (
                builder.__module__, builder.__qualname__):
            raise ValueError(
                f"Model name {name!r} is already registered by {taken.builder.__module__}."
                f"{taken.builder.__qualname__}; register {builder.__qualname__} under "
                "another name.")
        _REGISTRY[name] = ModelInfo(
            name=name, builder=builder, default_size=default_size, min_size=min_size,
            preprocessing=preprocessing, keras_twin=keras_twin, weights_url=weights_url,
            imagenet_files=dict(imagenet_files or {}), channels=channels,
            feature_pooling=feature_pooling)
        return builder

    return wrap


def _load_builders():
    """Import every builder module once; each registers its architectures."""
    from kapps.process import import_tensorflow

    import_tensorflow()
    for module in BUILDER_MODULES:
        importlib.import_module(module)


def list_models():
    """Names of every registered architecture, sorted."""
    _load_builders()
    return sorted(_REGISTRY)


def check_model_name(name):
    """A clear `ValueError` listing valid names unless `name` is built in (`kapps.stats`'
    table) or registered by the caller; TensorFlow is not loaded, so a typo costs nothing."""
    from kapps.stats import MODEL_STATS

    key = str(name).lower()
    if key not in _REGISTRY and key not in MODEL_STATS:
        raise ValueError(f"Unknown model {name!r}. Valid names: "
                         f"{', '.join(sorted(set(MODEL_STATS) | set(_REGISTRY)))}.")


def get_model_info(name) -> ModelInfo:
    """The registry entry for `name`; a clear `ValueError` listing valid names otherwise."""
    check_model_name(name)
    _load_builders()
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(
            f"Unknown model {name!r}. Valid names: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[key]


def create_model(name, **kwargs):
    """Build the registered architecture `name`; keyword arguments go to its builder."""
    from kapps.process import start_devices

    info = get_model_info(name)
    start_devices()  # quietly, before building does it with TensorFlow's CUDA probe lines
    return info.builder(**kwargs)
