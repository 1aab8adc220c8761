"""ImageNet weights: official file names, found in `model_dir` or the Keras cache,
loaded into our builders; a missing file fails offline with its name and URL."""
import os

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import kapps
from kapps import mobilenet, mobilenet_v2, mobilenet_v3
from kapps.weights import WeightsNotFoundError

# Keras' h5 code converts each tensor with np.array(x, copy=False): NumPy 2 notices, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


class Offline(Exception):
    """What the patched `keras.utils.get_file` raises: no test may download."""


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network and an empty Keras cache; returns the list of attempted downloads."""
    attempts = []

    def get_file(fname, origin, **kwargs):
        attempts.append((fname, origin, kwargs.get("file_hash")))
        raise Offline(origin)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return attempts


def write_official_h5(model, path):
    """Write `model`'s weights in the legacy layout of the official files (weights at
    the root, matched by layer order); Keras 3 `save_weights` only writes `.weights.h5`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def outputs(model, side):
    x = np.random.default_rng(1).uniform(-1, 1, (1, side, side, 3)).astype("float32")
    return keras.ops.convert_to_numpy(model(x, training=False))


def perturb_batchnorm(model):
    """Give batch norms non-trivial statistics so that a missed tensor shows."""
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])


# (registry name, builder arguments, official file name): widths and sizes whose file
# name carries them, and one fixed-name family.
CASES = [
    ("mobilenet", dict(include_top=False, alpha=0.25, input_shape=(128, 128, 3)),
     "mobilenet_2_5_128_tf_no_top.h5"),
    ("mobilenet_v2", dict(include_top=True, alpha=0.35, input_shape=(96, 96, 3)),
     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5"),
    ("resnet50", dict(include_top=False, input_shape=(32, 32, 3)),
     "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("densenet121", dict(include_top=False, input_shape=(32, 32, 3)),
     "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("mobilenet_v3_small", dict(include_top=True, input_shape=(224, 224, 3)),
     "weights_mobilenet_v3_small_224_1.0_float.h5"),
    ("mobilenet_v3_large", dict(include_top=False, alpha=0.75, input_shape=(224, 224, 3)),
     "weights_mobilenet_v3_large_224_0.75_float_no_top_v2.h5"),
]


@pytest.mark.parametrize("name,kwargs,fname", CASES, ids=[c[0] for c in CASES])
def test_official_file_in_model_dir_loads(tmp_path, offline, name, kwargs, fname):
    info = kapps.get_model_info(name)
    twin = getattr(keras.applications, info.keras_twin)(weights=None, **kwargs)
    perturb_batchnorm(twin)
    write_official_h5(twin, str(tmp_path / "weights" / fname))

    ours = info.builder(weights="imagenet", model_dir=tmp_path / "weights", **kwargs)
    side = kwargs["input_shape"][0]
    np.testing.assert_allclose(outputs(ours, side), outputs(twin, side), atol=1e-5)
    assert offline == []


def test_keras_cache_is_searched_after_model_dir(tmp_path, offline):
    kwargs = dict(include_top=False, alpha=0.25, input_shape=(128, 128, 3))
    twin = keras.applications.MobileNet(weights=None, **kwargs)
    perturb_batchnorm(twin)
    write_official_h5(twin, str(tmp_path / "keras_home" / "models" /
                                "mobilenet_2_5_128_tf_no_top.h5"))
    ours = kapps.MobileNet(weights="imagenet", model_dir=tmp_path / "empty", **kwargs)
    np.testing.assert_allclose(outputs(ours, 128), outputs(twin, 128), atol=1e-5)


def test_missing_file_names_file_and_url_offline(offline):
    info = kapps.get_model_info("mobilenet_v2")
    with pytest.raises(WeightsNotFoundError) as err:
        kapps.MobileNetV2(weights="imagenet", include_top=False, alpha=0.5,
                          input_shape=(160, 160, 3))
    fname = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_160_no_top.h5"
    assert fname in str(err.value) and info.weights_url + fname in str(err.value)
    assert offline == [(fname, info.weights_url + fname, None)]


def test_download_pins_the_registry_hash(offline):
    info = kapps.get_model_info("resnet50")
    with pytest.raises(WeightsNotFoundError, match="resnet50_weights_tf_dim_ordering"):
        kapps.ResNet50(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    fname, file_hash = info.imagenet_files["notop"]
    assert offline == [(fname, info.weights_url + fname, file_hash)]
    assert file_hash  # upstream pins this one


def test_unpublished_size_warns_and_uses_224_file(offline):
    with pytest.warns(UserWarning, match="224x224"):
        with pytest.raises(WeightsNotFoundError, match="mobilenet_1_0_224_tf_no_top.h5"):
            kapps.MobileNet(weights="imagenet", include_top=False, input_shape=(100, 100, 3))


@pytest.mark.parametrize("alpha,size,top,fname", [
    (1.0, 224, True, "mobilenet_1_0_224_tf.h5"),
    (0.75, 192, False, "mobilenet_7_5_192_tf_no_top.h5"),
    (0.5, 160, True, "mobilenet_5_0_160_tf.h5"),
])
def test_mobilenet_file_names(alpha, size, top, fname):
    assert mobilenet.imagenet_file(alpha, size, top) == (fname, None)


@pytest.mark.parametrize("alpha,size,top,fname", [
    (1.0, 224, True, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"),
    (1.4, 224, False, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224_no_top.h5"),
    (0.35, 96, True, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5"),
])
def test_mobilenet_v2_file_names(alpha, size, top, fname):
    assert mobilenet_v2.imagenet_file(alpha, size, top) == (fname, None)


def test_user_weights_file_loads(tmp_path):
    ours = kapps.MobileNetV2(weights=None, include_top=False, alpha=0.35,
                             input_shape=(32, 32, 3))
    perturb_batchnorm(ours)
    path = str(tmp_path / "mine.weights.h5")
    ours.save_weights(path)
    again = kapps.MobileNetV2(weights=path, include_top=False, alpha=0.35,
                              input_shape=(32, 32, 3))
    np.testing.assert_allclose(outputs(again, 32), outputs(ours, 32), atol=1e-6)


@pytest.mark.parametrize("model_type,alpha,minimalistic", [
    ("small", 1.0, False), ("small", 0.75, False), ("small", 1.0, True),
    ("large", 1.0, False), ("large", 0.75, False), ("large", 1.0, True),
])
def test_mobilenet_v3_files_are_keras_own(model_type, alpha, minimalistic):
    """Names built as keras.applications builds them, hashes as it publishes them."""
    from keras.src.applications.mobilenet_v3 import WEIGHTS_HASHES

    key = f"{model_type}{'_minimalistic' if minimalistic else ''}_224_{alpha}_float"
    assert mobilenet_v3.imagenet_file(model_type, alpha, minimalistic, True) == (
        f"weights_mobilenet_v3_{key}.h5", WEIGHTS_HASHES[key][0])
    assert mobilenet_v3.imagenet_file(model_type, alpha, minimalistic, False) == (
        f"weights_mobilenet_v3_{key}_no_top_v2.h5", WEIGHTS_HASHES[key][1])


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v3_large"])
def test_new_families_download_with_the_published_hash(offline, name):
    info = kapps.get_model_info(name)
    with pytest.raises(WeightsNotFoundError, match=info.imagenet_files["notop"][0]):
        info.builder(weights="imagenet", include_top=False, input_shape=(224, 224, 3))
    fname, file_hash = info.imagenet_files["notop"]
    assert offline == [(fname, info.weights_url + fname, file_hash)] and file_hash


@pytest.mark.parametrize("error, reason", [
    (Exception("URL fetch failure on https://x/y.h5: None -- [Errno -3] Temporary failure in "
               "name resolution"), "(no network: Exception: [Errno -3] Temporary failure in name resolution)"),
    (ValueError("Incomplete or corrupted file detected. The md5 file hash does not match the "
                "provided value of abc."), "MD5 hash does not match the published one"),
])
def test_a_failed_download_says_why_in_the_spelling_of_the_interface(
        tmp_path, monkeypatch, error, reason):
    def get_file(*args, **kwargs):
        raise error

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(WeightsNotFoundError) as err:
        kapps.ResNet50(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    python = str(err.value)
    assert reason in python and "weights=None" in python and "--weights" not in python
    flags = err.value.message(command_line=True)
    assert reason in flags and "--weights none --fine_tune all" in flags
    assert "weights=None" not in flags
