"""The model registry: one entry per architecture, with what a user needs to feed it.

Builders register themselves with `@register_model(...)`; `create_model(name)` and
`list_models()` are the only ways the rest of kapps looks models up, so a new
architecture is one file and one decorator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

# Weight files: {"top": (file name, sha256), "notop": (file name, sha256)} for each source.
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
    """Decorator that records a builder under `name` in the registry."""

    def wrap(builder):
        _REGISTRY[name] = ModelInfo(
            name=name, builder=builder, default_size=default_size, min_size=min_size,
            preprocessing=preprocessing, keras_twin=keras_twin, weights_url=weights_url,
            imagenet_files=dict(imagenet_files or {}), channels=channels,
            feature_pooling=feature_pooling)
        return builder

    return wrap


def _load_builders():
    # Importing the package imports every builder module, which registers them.
    import kapps  # noqa: F401


def list_models():
    """Names of every registered architecture, sorted."""
    _load_builders()
    return sorted(_REGISTRY)


def get_model_info(name) -> ModelInfo:
    """The registry entry for `name`; a clear `ValueError` listing valid names otherwise."""
    _load_builders()
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(
            f"Unknown model {name!r}. Valid names: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[key]


def create_model(name, **kwargs):
    """Build the registered architecture `name`; keyword arguments go to its builder."""
    return get_model_info(name).builder(**kwargs)
