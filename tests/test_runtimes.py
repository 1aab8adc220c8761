"""Faster runtimes for TensorFlow's work: a converted base for the bottlenecks and a
converted model.keras for `kapps predict`, within 1e-4 of TensorFlow, cached once,
chosen by the crossover, and falling back to TensorFlow on one line when they fail.

A SmallCNN (BatchNorm and Dropout inside, which a conversion in training mode would get
wrong) at 32 px with random weights keeps each conversion to a few seconds.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import imagegen
from probes import WITHOUT_TENSORFLOW
import kapps
from kapps.errors import UserError
from retrain.prediction import runtimes
from retrain.train import bottlenecks
from retrain.cli.predict import main as predict_main
from retrain.config import RetrainConfig, resolve
from retrain.prediction.predictor import Predictor
from retrain.train.prepare import prepare_data

REPO = str(Path(__file__).resolve().parents[1])
SIZE = 32
TOLERANCE = 1e-4
LABELS = ["red", "green", "blue"]


def _trunk(seed):
    keras.utils.set_random_seed(seed)
    return kapps.create_model("small_cnn", include_top=False, weights=None, pooling="avg",
                              input_shape=(SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three noisy colours, of other sizes than the model's, so every path resizes."""
    root = tmp_path_factory.mktemp("runtime")
    return imagegen.make_class_folder(root / "pictures", {"red": 5, "green": 5, "blue": 5},
                                      size=(40, 28), noise=60)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "small_cnn.weights.h5"
    _trunk(3).save_weights(path)
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A classifier as `kapps retrain` exports it: raw pixels in, resize layer inside."""
    out = tmp_path_factory.mktemp("model")
    inputs = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Resizing(SIZE, SIZE, name="resize")(inputs)
    x = kapps.preprocessing_layer("tf")(x)
    x = _trunk(4)(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")(x)
    keras.Model(inputs, outputs).save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return out


def _features(folder, weights, cache, runtime):
    config = resolve(RetrainConfig(image_dir=str(folder), architecture="small_cnn",
                                   weights=weights, image_size=SIZE, bottleneck_dir=str(cache),
                                   flip_left_right=True, random_crop=10, distorted_variants=1,
                                   runtime=runtime, verbose=0))
    prepared = prepare_data(config)
    cache = bottlenecks.BottleneckCache(config.bottleneck_dir, prepared.base.key)
    return prepared, cache


@pytest.mark.parametrize("runtime", ["litert", "onnx"])
def test_features_agree_with_tensorflow_and_the_converted_base_is_kept(
        folder, weights, tmp_path, monkeypatch, runtime):
    reference, _ = _features(folder, weights, tmp_path / "tf", "tensorflow")
    prepared, cache = _features(folder, weights, tmp_path / runtime, runtime)
    assert prepared.computed == reference.computed > 0
    for split in ("train", "validation", "test"):
        np.testing.assert_allclose(prepared.features[split], reference.features[split],
                                   rtol=0, atol=TOLERANCE)
    # Beside the features and keyed like them; no TensorFlow-computed copy came along.
    kept = Path(cache.folder) / ("base" + runtimes.CONVERTED[runtime][3])
    assert kept.is_file() and (Path(cache.folder) / "key.json").is_file()
    assert not list((tmp_path / "tf").rglob("base.*"))

    # Features gone, conversion kept: computed again on the kept base, nothing converted.
    for shard in Path(cache.folder).glob("*.npz"):
        shard.unlink()
    monkeypatch.setattr(runtimes, "convert", _must_not_convert)
    again, _ = _features(folder, weights, tmp_path / runtime, "auto")
    assert again.computed == prepared.computed
    np.testing.assert_allclose(again.features["train"], prepared.features["train"], rtol=0,
                               atol=0)


def _must_not_convert(*args):
    raise AssertionError("converted again")


def _scores(argv, pictures, capsys):
    assert predict_main([*argv, "--json", "--top_k", str(len(LABELS)), "--threads", "1",
                         *pictures]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    return np.array([[{p["label"]: p["score"] for p in r["predictions"]}[label]
                      for label in LABELS] for r in results])


def test_predict_on_litert_agrees_and_then_runs_without_tensorflow(model_dir, folder, capsys):
    pictures = sorted(str(p) for p in Path(folder).rglob("*.png"))[:6]
    model = ["--model", str(model_dir)]
    expected = _scores([*model, "--runtime", "tensorflow"], pictures, capsys)
    assert not (model_dir / ".runtime").exists()
    scores = _scores([*model, "--runtime", "litert"], pictures, capsys)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=TOLERANCE)
    assert len(list((model_dir / ".runtime").glob("*.tflite"))) == 1
    assert np.abs(expected - 1 / len(LABELS)).max() > 10 * TOLERANCE  # a difference would show

    # `auto` on one picture: below the crossover, but the kept conversion answers.
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "predict", "--model", str(model_dir), "--json",
         "--top_k", str(len(LABELS)), *pictures],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    results = json.loads(done.stdout)["results"]
    again = np.array([[{p["label"]: p["score"] for p in r["predictions"]}[label]
                       for label in LABELS] for r in results])
    np.testing.assert_allclose(again, expected, rtol=0, atol=TOLERANCE)




def test_a_failed_conversion_falls_back_to_tensorflow_on_one_line(
        model_dir, folder, weights, tmp_path, monkeypatch, capsys):
    def crash(model, path, size, runtime):
        raise RuntimeError("converter crashed\nwith a long story")

    monkeypatch.setattr(runtimes, "convert", crash)
    predictor = Predictor(_copy(model_dir, tmp_path), runtime="onnx")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "converter crashed" in err[0] and \
        err[0].endswith("predicting with TensorFlow"), err
    assert predictor.runtime == "tensorflow" and predictor.model is not None
    assert not isinstance(predictor.scores([np.zeros((8, 8, 3), np.uint8)])[0], str)

    prepared, _ = _features(folder, weights, tmp_path / "cache", "litert")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("extracting features with TensorFlow"), err
    assert prepared.computed > 0


def _copy(model_dir, tmp_path):
    """The model without any conversion kept beside it."""
    copy = tmp_path / "model"
    copy.mkdir()
    for name in ("model.keras", "labels.txt"):
        (copy / name).write_bytes((model_dir / name).read_bytes())
    return copy


def test_a_new_conversion_removes_those_of_a_replaced_model(model_dir, tmp_path):
    copy = _copy(model_dir, tmp_path)
    Predictor(copy, runtime="litert")
    first = list((copy / ".runtime").glob("*.tflite"))
    other = copy / "other.keras"  # another model beside it keeps its conversion
    other.write_bytes((model_dir / "model.keras").read_bytes())
    model = keras.saving.load_model(copy / "model.keras")
    model.layers[-1].bias.assign([1.0, 0.0, -1.0])  # "retrained" by other means
    model.save(copy / "model.keras")
    Predictor(copy, runtime="litert")
    kept = list((copy / ".runtime").glob("*.tflite"))
    assert len(first) == 1 and len(kept) == 2 and first[0] in kept
    (copy / "other.keras").unlink()
    Predictor(copy, runtime="onnx")
    left = list((copy / ".runtime").iterdir())
    assert first[0] not in left and sorted(p.suffix for p in left) == [".onnx", ".tflite"]


def test_auto_uses_tensorflow_below_the_crossover(model_dir, tmp_path, monkeypatch):
    copy = _copy(model_dir, tmp_path)
    predictor = Predictor(copy, runtime="auto", pictures=runtimes.PREDICT_CROSSOVER - 1)
    assert predictor.runtime == "tensorflow" and predictor.model is not None
    assert not (copy / ".runtime").exists()

    none = {}
    assert runtimes.choose("auto", 9, 10, none) == "tensorflow"
    assert runtimes.choose("auto", None, 10, none) == "tensorflow"
    assert runtimes.choose("auto", 10, 10, none) == "litert"
    assert runtimes.choose("auto", 1, 10, {"onnx": True}) == "onnx"
    assert runtimes.choose("tensorflow", 10, 10, {"litert": True}) == "tensorflow"
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # not installed
    assert runtimes.choose("auto", 10, 10, none) == "onnx"
    assert runtimes.choose("auto", 1, 10, {"litert": True}) == "tensorflow"


def test_a_missing_runtime_or_a_mismatch_is_one_line(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    picture = str(imagegen.write_image(tmp_path / "red.png", (220, 30, 30)))
    assert predict_main(["--model", str(model_dir), "--runtime", "onnx", picture]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--runtime onnx" in err and \
        "pip install onnxruntime" in err and "'kapps[onnx]'" in err, err
    with pytest.raises(UserError, match="--runtime onnx.*pip install onnxruntime"):
        resolve(RetrainConfig(image_dir=str(tmp_path), runtime="onnx"))
    with pytest.raises(UserError, match="--runtime must be one of auto, tensorflow"):
        resolve(RetrainConfig(image_dir=str(tmp_path), runtime="tflite"))

    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"not read: the choice is wrong first")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS))
    with pytest.raises(UserError, match="--runtime tensorflow cannot run .*model.tflite.*"
                                        "pass --runtime auto or litert"):
        Predictor(tflite, runtime="tensorflow")


def test_runtime_is_a_retrain_and_tune_flag():
    from retrain.cli.retrain import parse_config
    from tuning.cli_tune import build_parser

    assert RetrainConfig().runtime == "auto"
    assert parse_config(["--runtime", "litert"]).runtime == "litert"
    assert build_parser().parse_args(["--runtime", "onnx"]).runtime == "onnx"
    assert "runtime" in {f.name for f in dataclasses.fields(RetrainConfig)}


@pytest.fixture(scope="module")
def kept_retrain(folder, weights, tmp_path_factory):
    """A frozen-base retrain whose feature pass ran on LiteRT: the base conversion it
    made is kept beside model.keras with the head's weights."""
    from retrain import retrain

    out = tmp_path_factory.mktemp("kept") / "model"
    retrain(image_dir=str(folder), architecture="small_cnn", weights=weights, image_size=SIZE,
            bottleneck_dir=str(tmp_path_factory.mktemp("kept_cache")), output_dir=str(out),
            runtime="litert", hidden_units=8, epochs=3, seed=1, verbose=0)
    return out


def test_a_retrain_keeps_its_base_conversion_and_predict_answers_without_tensorflow(
        kept_retrain, folder):
    kept = sorted(p.name for p in (kept_retrain / ".runtime").iterdir())
    assert [name[16:] for name in kept] == ["-base.tflite", "-head.npz"], kept
    pictures = sorted(str(p) for p in Path(folder).rglob("*.png"))[:6]
    expected = np.stack(Predictor(kept_retrain, runtime="tensorflow").scores(pictures))
    predictor = Predictor(kept_retrain)
    assert predictor.runtime == "litert" and predictor.model is None
    assert "base the retrain kept" in predictor.answered_by
    np.testing.assert_allclose(np.stack(predictor.scores(pictures)), expected, rtol=0,
                               atol=TOLERANCE)
    assert np.abs(expected - 1 / len(LABELS)).max() > 10 * TOLERANCE

    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "predict", "--model", str(kept_retrain),
         "--json", "--verbose", "--top_k", str(len(LABELS)), *pictures],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == f"answered by {predictor.answered_by}\n"
    document = json.loads(done.stdout)
    assert document["answered_by"] == predictor.answered_by
    results = document["results"]
    labels = predictor.labels
    again = np.array([[{p["label"]: p["score"] for p in r["predictions"]}[label]
                       for label in labels] for r in results])
    np.testing.assert_allclose(again, expected, rtol=0, atol=TOLERANCE)


def test_a_kept_base_never_answers_for_a_model_replaced_since(kept_retrain, tmp_path):
    """The pair is named by model.keras' content: another model in its place runs on
    TensorFlow (and the stale pair is removed once something is converted)."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(kept_retrain, copy)
    model = keras.saving.load_model(copy / "model.keras")
    model.layers[-1].bias.assign(model.layers[-1].bias.numpy() + [2.0, 0.0, -2.0])
    model.save(copy / "model.keras")
    predictor = Predictor(copy)
    assert predictor.runtime == "tensorflow" and predictor.model is not None
    Predictor(copy, runtime="litert")  # converts the new model: the old pair goes
    left = sorted(p.name for p in (copy / ".runtime").iterdir())
    assert len(left) == 1 and left[0].endswith(".tflite") and "-base" not in left[0], left


def test_a_server_answers_from_the_kept_base_as_tensorflow_does(kept_retrain, folder):
    """`kapps serve` takes the kept base by itself, says so, and its answers (pictures
    resized as they are decoded) stay within 1e-4 of TensorFlow's."""
    import base64

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retrain.serving import create_app

    pictures = sorted(Path(folder).rglob("*.png"))[:4]
    expected = np.stack(Predictor(kept_retrain, runtime="tensorflow").scores(
        [str(p) for p in pictures]))
    with TestClient(create_app({"colours": str(kept_retrain)})) as client:
        listing = client.get("/v1/models").json()["models"][0]
        answer = client.post("/v1/models/colours:predict", json={"instances": [
            {"b64": base64.b64encode(p.read_bytes()).decode()} for p in pictures]})
    assert "base the retrain kept" in listing["answered_by"]
    assert answer.status_code == 200, answer.json()
    np.testing.assert_allclose(np.array(answer.json()["predictions"]), expected, rtol=0,
                               atol=TOLERANCE)
