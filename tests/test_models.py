"""Every registered builder: builds and runs on a tiny input, matches its
keras.applications twin layer for layer, has the published parameter count, and
rejects bad arguments with the rule and the value."""
import functools

import keras
import numpy as np
import pytest

import kapps

# Published parameter counts with the 1000-class ImageNet top (keras.applications docs;
# DenseNet-121 and MobileNetV3 as their keras.applications twins count them, batch-norm
# statistics included: the papers round them to 8.0M, 2.5M and 5.4M).
PARAMS_WITH_TOP = {
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "inception_v3": 23_851_784,
    "mobilenet": 4_253_864,
    "mobilenet_v2": 3_538_984,
    "resnet50": 25_636_712,
    "densenet121": 8_062_504,
    "mobilenet_v3_small": 2_554_968,
    "mobilenet_v3_large": 5_507_432,
}
# MobileNetV3 rescales pixels itself, so retraining feeds it raw pixels (`raw`).
PREPROCESSING = {"vgg16": "caffe", "vgg19": "caffe", "resnet50": "caffe",
                 "inception_v3": "tf", "mobilenet": "tf", "mobilenet_v2": "tf",
                 "densenet121": "torch", "mobilenet_v3_small": "raw",
                 "mobilenet_v3_large": "raw"}
# A classifier top with few classes at a small input, for the builders whose top
# accepts a small size.
SMALL_TOPS = {
    "lenet5": dict(input_shape=(32, 32, 3)),
    "mobilenet": dict(alpha=0.25, input_shape=(128, 128, 3)),
    "mobilenet_v2": dict(alpha=0.35, input_shape=(96, 96, 3)),
    "mobilenet_v3_small": dict(input_shape=(32, 32, 3)),  # its top pools: any size
}


def small_side(name):
    return max(kapps.get_model_info(name).min_size, 32)


def run(model, side, batch=1):
    x = np.random.default_rng(0).uniform(-1, 1, (batch, side, side, 3)).astype("float32")
    return keras.ops.convert_to_numpy(model(x, training=False)), x


@functools.lru_cache(maxsize=None)
def features(name):
    """The average-pooled feature extractor at a small side (built once per module)."""
    side = small_side(name)
    return kapps.create_model(name, include_top=False, weights=None, pooling="avg",
                              input_shape=(side, side, 3))


@pytest.mark.parametrize("name", kapps.list_models())
def test_builds_and_runs_on_a_tiny_input(name):
    out, _ = run(features(name), small_side(name))
    assert out.ndim == 2 and out.shape[0] == 1 and out.shape[1] > 0
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(SMALL_TOPS))
def test_small_classifier_top(name):
    kwargs = SMALL_TOPS[name]
    model = kapps.create_model(name, include_top=True, weights=None, classes=3, **kwargs)
    out, _ = run(model, kwargs["input_shape"][0])
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)  # softmax rows


# (registry name, arguments for both builders): the pooled features at a small size,
# plus the MobileNet tops (their layers differ from the feature extractor's) at other widths.
TWIN_CASES = [(name, {}) for name in sorted(PARAMS_WITH_TOP)] + [
    ("mobilenet", dict(include_top=True, classes=5, alpha=0.5, input_shape=(128, 128, 3))),
    ("mobilenet_v2", dict(include_top=True, classes=5, alpha=1.4, input_shape=(96, 96, 3))),
    ("mobilenet_v3_small", dict(include_top=True, classes=5, alpha=1.25,
                                input_shape=(40, 40, 3))),
    ("mobilenet_v3_large", dict(include_top=True, classes=5, alpha=0.75, minimalistic=True,
                                input_shape=(48, 48, 3))),
]


@pytest.mark.parametrize("name,kwargs", TWIN_CASES,
                         ids=[f"{n}-{'top' if k else 'features'}" for n, k in TWIN_CASES])
def test_weight_compatible_with_keras_applications(name, kwargs):
    info = kapps.get_model_info(name)
    side = small_side(name)
    ours = info.builder(weights=None, **kwargs) if kwargs else features(name)
    kwargs = {"include_top": False, "pooling": "avg", "input_shape": (side, side, 3), **kwargs}
    keras.backend.clear_session()  # so Keras' automatic names start afresh for the twin
    twin = getattr(keras.applications, info.keras_twin)(weights=None, **kwargs)

    # Legacy .h5 files are matched by the order (and optionally the names) of the
    # layers that hold weights.
    weighted = [[layer.name for layer in model.layers if layer.weights] for model in (ours, twin)]
    assert weighted[0] == weighted[1]
    assert [w.shape for w in ours.weights] == [w.shape for w in twin.weights]
    twin.set_weights(ours.get_weights())
    ours_out, x = run(ours, kwargs["input_shape"][0])
    twin_out = keras.ops.convert_to_numpy(twin(x, training=False))
    np.testing.assert_allclose(ours_out, twin_out, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PARAMS_WITH_TOP))
def test_parameter_count_with_imagenet_top(name):
    model = kapps.create_model(name, include_top=True, weights=None)
    assert model.count_params() == PARAMS_WITH_TOP[name]
    assert model.layers[-1].name == "predictions"


@pytest.mark.parametrize("name", sorted(PREPROCESSING))
def test_registry_metadata(name):
    info = kapps.get_model_info(name)
    assert info.preprocessing == PREPROCESSING[name]
    assert hasattr(keras.applications, info.keras_twin)
    assert info.weights_url.startswith("https://storage.googleapis.com/")
    for key in ("top", "notop"):
        fname, _ = info.imagenet_files[key]
        assert fname.endswith(".h5")


@pytest.mark.parametrize("name,kwargs,rule,value", [
    ("mobilenet", dict(weights="imagenet", alpha=0.3), "`alpha` must be one of", "alpha=0.3"),
    ("mobilenet", dict(weights="imagenet", depth_multiplier=2), "must be 1",
     "depth_multiplier=2"),
    ("mobilenet_v2", dict(weights="imagenet", alpha=0.6), "`alpha` must be one of", "alpha=0.6"),
    ("vgg16", dict(weights="imagenet", classes=10), "`classes` should be 1000", "classes=10"),
    ("resnet50", dict(weights="imagenet", classifier_activation="relu"),
     "None or 'softmax'", "classifier_activation='relu'"),
    ("resnet50", dict(include_top=False, input_shape=(16, 16, 3)), "at least 32x32",
     "input_shape=(16, 16, 3)"),
    ("inception_v3", dict(include_top=False, input_shape=(64, 64, 3)), "at least 75x75",
     "input_shape=(64, 64, 3)"),
    ("vgg16", dict(input_shape=(64, 64, 3)), "should be (224, 224, 3)",
     "input_shape=(64, 64, 3)"),
    ("mobilenet_v2", dict(include_top=False, pooling="sum"), "`pooling` must be one of",
     "pooling='sum'"),
    ("mobilenet", dict(weights="no_such_file.h5"), "`weights` argument should be",
     "weights='no_such_file.h5'"),
    ("alexnet", dict(weights="imagenet"), "alexnet has no ImageNet weights",
     "weights='imagenet'"),
    ("googlenet", dict(weights="imagenet"), "googlenet has no ImageNet weights",
     "weights='imagenet'"),
    ("alexnet", dict(include_top=False, input_shape=(62, 62, 3)), "at least 63x63",
     "input_shape=(62, 62, 3)"),
    ("googlenet", dict(include_top=False, aux_logits=True), "needs `include_top=True`",
     "aux_logits=True"),
    ("mobilenet_v3_small", dict(weights="imagenet", alpha=0.5), "`alpha` must be one of",
     "alpha=0.5"),
    ("mobilenet_v3_large", dict(weights="imagenet", minimalistic=True, alpha=0.75),
     "`alpha` must be one of (1.0,)", "alpha=0.75"),
])
def test_bad_arguments_state_rule_and_value(name, kwargs, rule, value):
    kwargs = {"weights": None, **kwargs}
    with pytest.raises(ValueError) as err:
        kapps.create_model(name, **kwargs)
    assert rule in str(err.value) and value in str(err.value)


def test_register_model_refuses_a_name_already_taken():
    from kapps.registry import register_model

    def impostor(**kwargs):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="'vgg16' is already registered by kapps.vgg16.VGG16"):
        register_model("vgg16", default_size=224, min_size=32, preprocessing="caffe")(impostor)
    assert kapps.get_model_info("vgg16").builder is kapps.VGG16
