"""Each phone photo is decoded once by `kapps retrain` with a frozen base: the feature
pass's decode (perhaps done ahead, while TensorFlow starts) is the scan's check too, and
a second run, whose features are cached, decodes nothing."""
import collections
import os
import threading

import keras
import pytest

import imagegen
import kapps


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("phone")
    for i, label in enumerate(["cat", "cat", "dog", "dog", "dog", "cat"]):
        imagegen.write_camera_jpeg(root / "photos" / label / f"IMG_{i}.jpg", seed=i,
                                   orientation=6 if i == 0 else None)
    keras.utils.set_random_seed(0)
    weights = root / "small_cnn.weights.h5"
    kapps.create_model("small_cnn", include_top=False, weights=None, pooling="avg",
                       input_shape=(32, 32, 3)).save_weights(weights)
    return root


def _count_decodes(monkeypatch):
    from retrain.data import images

    decoded, lock = collections.Counter(), threading.Lock()
    real = images._decode

    def counting(path, *args, **kwargs):
        with lock:  # decoding ahead runs on other threads
            decoded[os.path.basename(os.fspath(path))] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images, "_decode", counting)
    return decoded


def test_retrain_decodes_each_phone_photo_once_then_never_again(photos, monkeypatch):
    from retrain.cli.retrain import main

    decoded = _count_decodes(monkeypatch)
    argv = ["--image_dir", str(photos / "photos"), "--architecture", "small_cnn",
            "--weights", str(photos / "small_cnn.weights.h5"), "--image_size", "32",
            "--bottleneck_dir", str(photos / "cache"), "--output_dir", str(photos / "out"),
            "--epochs", "1", "--verbose", "0"]
    assert main(argv) == 0
    assert decoded == {f"IMG_{i}.jpg": 1 for i in range(6)}
    decoded.clear()
    assert main(argv + ["--output_dir", str(photos / "out2")]) == 0
    assert not decoded
