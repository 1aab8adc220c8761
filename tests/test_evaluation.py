"""The numbers `metrics.json` reports are what prediction gives, for every kind of base.

For each kind (a registry architecture with a weights file, from scratch, transfer from
a kapps export, `--base_layer`), `kapps predict` and `retrain.Predictor` on the test
pictures listed in `split.json` reproduce the test accuracy exactly, and their scores
are the exported model's on pictures resized as training resized them. A picture that
breaks after the folder scan is reported and left out, never trained or scored black.
"""
import json
import os
from pathlib import Path

import imagegen
import keras
import numpy as np
import pytest
import tensorflow as tf

import kapps
import retrain.train.prepare as prepare_module
from retrain import RetrainConfig, retrain
from retrain.cli.predict import main as predict_main
from retrain.data.images import load_image
from retrain.prediction.predictor import Predictor


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four noisy colour classes: a model trained for two epochs is right on most
    pictures, not all, so a change in what prediction sees changes the accuracy."""
    root = tmp_path_factory.mktemp("evaluation")
    pictures = imagegen.make_class_folder(root / "pictures", {"a": 10, "b": 10, "c": 10,
                                                              "d": 10}, size=28, noise=90)
    weights = root / "lenet5.weights.h5"
    keras.utils.set_random_seed(3)
    kapps.create_model("lenet5", include_top=False, input_shape=(32, 32, 3)).save_weights(weights)
    return root, Path(pictures), str(weights)


def _config(folder, out, **overrides):
    root, pictures, weights = folder
    settings = dict(image_dir=str(pictures), architecture="lenet5", weights=weights,
                    image_size=32, epochs=2, learning_rate=0.01, train_batch_size=8,
                    testing_percentage=30, validation_percentage=20, verbose=0,
                    output_dir=str(root / out), bottleneck_dir=str(root / "cache"))
    settings.update(overrides)
    return RetrainConfig(**settings)


def _check_prediction_reproduces_evaluation(result, capsys):
    out = Path(result.output_dir)
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    image_dir = metrics["config"]["image_dir"]
    rel_paths = json.loads((out / "split.json").read_text("utf-8"))["test"]
    paths = [os.path.join(image_dir, rel) for rel in rel_paths]
    truth = np.array([metrics["classes"].index(rel.split("/")[0]) for rel in rel_paths])
    size = result.prepared.base.image_size
    assert metrics["config"]["image_size"] == size  # the size the base really resizes to

    resized = np.stack([tf.image.resize(load_image(p).astype("float32"), [size, size])
                        for p in paths])
    expected = result.model.predict(resized, verbose=0)
    predictor = Predictor(out)
    scores = np.stack(predictor.scores(paths))
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert np.mean(scores.argmax(1) == truth) == metrics["test_accuracy"]
    one_by_one = np.stack([predictor.scores([p])[0] for p in paths])
    np.testing.assert_allclose(one_by_one, expected, atol=1e-5)

    capsys.readouterr()
    assert predict_main(["--model", str(out), "--json", "--top_k", "1"] + paths) == 0
    answers = json.loads(capsys.readouterr().out)["results"]
    top1 = [metrics["classes"].index(a["predictions"][0]["label"]) for a in answers]
    assert np.mean(np.array(top1) == truth) == metrics["test_accuracy"]


@pytest.mark.parametrize("kind, overrides", [
    ("weights_file", {}),
    ("lbfgs_head", {"head_fit": "lbfgs"}),  # the default head fit, folded into the head
    ("base_layer", {"base_layer": "conv2"}),
    ("top_n", {"fine_tune": "top:1"}),
    ("scratch", {"weights": "none", "fine_tune": "all"}),
])
def test_prediction_reproduces_the_test_accuracy(folder, capsys, kind, overrides):
    _check_prediction_reproduces_evaluation(retrain(_config(folder, kind, **overrides)), capsys)


def test_transfer_from_an_export_records_and_uses_its_real_size(folder, capsys):
    """The source export resizes to 24 px inside its (now nested) base; lenet5's default
    is 32. Training, metrics.json and prediction must all use the 24."""
    source = retrain(_config(folder, "source24", image_size=24))
    result = retrain(_config(folder, "transfer", weights=os.path.join(source.output_dir,
                                                                      "model.keras"),
                             image_size=None))
    assert result.prepared.base.image_size == 24
    _check_prediction_reproduces_evaluation(result, capsys)
    # A transfer from that transfer finds the resize nested two levels down.
    again = retrain(_config(folder, "transfer2", weights=os.path.join(result.output_dir,
                                                                     "model.keras"),
                            image_size=None))
    assert again.prepared.base.image_size == 24
    assert "preprocess_1" not in {layer.name for layer in again.model.layers}


@pytest.mark.parametrize("fine_tune", ["none", "top:1"])
def test_a_picture_that_breaks_after_the_scan_is_left_out(folder, tmp_path, monkeypatch,
                                                         capsys, fine_tune):
    """Two pictures (one training, one test) turn into garbage between the scan and the
    training: one warning line each, and neither is trained, validated or scored."""
    pictures = Path(imagegen.make_class_folder(tmp_path / "pictures", {"a": 8, "b": 8},
                                               size=28, noise=40))
    scan = prepare_module.scan_image_folder
    broken = []

    def scan_then_break(*args, **kwargs):
        dataset = scan(*args, **kwargs)
        for split in ("train", "test"):
            record = dataset.split(split)[0]
            imagegen.write_bytes(record.path, b"not a picture any more")
            broken.append(record.rel_path)
        return dataset

    monkeypatch.setattr(prepare_module, "scan_image_folder", scan_then_break)
    result = retrain(_config(folder, "broken", image_dir=str(pictures), fine_tune=fine_tune,
                             bottleneck_dir=str(tmp_path / "cache"),
                             output_dir=str(tmp_path / "out"), testing_percentage=25))
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("warning: ")]
    assert len(warnings) == 2 and all(any(rel in w for w in warnings) for rel in broken)
    out = tmp_path / "out"
    split = json.loads((out / "split.json").read_text("utf-8"))
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    report = json.loads((out / "dataset_report.json").read_text("utf-8"))
    assert not set(broken) & {p for paths in split.values() for p in paths}
    assert {b["path"] for b in report["broken"]} == set(broken)
    assert sum(metrics["split_sizes"].values()) == 16 - 2
    assert np.sum(metrics["confusion_matrix"]) == metrics["split_sizes"]["test"] == \
        len(split["test"])
    assert len(result.prepared.labels["train"]) == len(split["train"])

    # Fixed again, the pictures count again in a later run of this process.
    for rel in broken:
        imagegen.write_image(pictures / rel, imagegen.CLASS_COLORS[0], size=28)
    monkeypatch.setattr(prepare_module, "scan_image_folder", scan)
    again = retrain(_config(folder, "fixed", image_dir=str(pictures), fine_tune=fine_tune,
                            bottleneck_dir=str(tmp_path / "cache"),
                            output_dir=str(tmp_path / "out"), testing_percentage=25))
    assert sum(again.metrics["split_sizes"].values()) == 16
