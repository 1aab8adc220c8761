"""Grad-CAM: where the model looked for its answer (`retrain.prediction.explain`, `Predictor.explain`,
`kapps predict --explain`).

The proof is a model that can only be right by looking at one corner: 48 px pictures of
noise, class `mark` with a bright square in that corner, class `plain` without. Its
heatmaps must peak in that corner; the negative twin, trained with the square in the
opposite corner, must not peak there (and the same check fails on it).
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

from retrain import Predictor

SIZE = 48
MARK = 12  # side of the bright square, px
PICTURES_PER_CLASS = 200
LABELS = ["plain", "mark"]
CORNERS = ("top_left", "bottom_right")


def corner_pictures(corner, count, seed):
    """(pixels uint8 (N, SIZE, SIZE, 3), targets): noise, and half of them with a bright
    square in `corner`; nothing else tells the classes apart."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 128, (2 * count, SIZE, SIZE, 3), dtype=np.uint8)
    targets = np.repeat([0, 1], count)
    rows = slice(2, 2 + MARK) if corner == "top_left" else slice(SIZE - 2 - MARK, SIZE - 2)
    pixels[count:, rows, rows] = 255
    return pixels, targets


def export_corner_model(folder, corner):
    """Train a tiny conv net on `corner` pictures and write it as `kapps retrain` exports it:
    raw pixels -> resize -> kapps.Preprocess -> the architecture as a nested model ->
    global pooling -> softmax head."""
    import keras
    import kapps

    keras.utils.set_random_seed(0)
    inner = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inner)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    backbone = keras.Model(inner, x, name="tiny_cnn")
    pixels_in = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Resizing(SIZE, SIZE, name="resize")(pixels_in)
    x = kapps.Preprocess("unit")(x)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    x = keras.layers.Dropout(0.1, name="head_dropout")(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")(x)
    model = keras.Model(pixels_in, outputs, name="classifier")
    model.compile(keras.optimizers.Adam(0.003), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    pixels, targets = corner_pictures(corner, PICTURES_PER_CLASS, seed=1)
    model.fit(pixels.astype("float32"), targets, epochs=8, batch_size=32, verbose=0)
    pixels, targets = corner_pictures(corner, 50, seed=2)
    _, accuracy = model.evaluate(pixels.astype("float32"), targets, verbose=0)
    assert accuracy >= 0.95, "the model did not learn the mark: its heatmaps would prove nothing"
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "model.keras"))
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(LABELS) + "\n")
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"config": {"image_size": SIZE}}, f)
    return folder


@pytest.fixture(scope="module")
def corner_models(tmp_path_factory):
    """{corner: Predictor of a model trained with the mark in that corner}."""
    root = tmp_path_factory.mktemp("corners")
    return {corner: Predictor(export_corner_model(str(root / corner), corner))
            for corner in CORNERS}


def quadrant(heatmap):
    """Where a heatmap peaks: `top_left`, `top_right`, `bottom_left` or `bottom_right`;
    None where it has no heat at all (an argmax of zeros would say `top_left`)."""
    if not heatmap.max() > 0:
        return None
    row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    vertical = "top" if row < heatmap.shape[0] / 2 else "bottom"
    return f"{vertical}_{'left' if col < heatmap.shape[1] / 2 else 'right'}"


def share_peaking_in(predictor, pictures, corner):
    """The share of `pictures` answered `mark` whose heatmap peaks in `corner`."""
    explained = predictor.explain(list(pictures))
    marked = [heatmap for heatmap, result in explained if result.predictions[0].label == "mark"]
    assert len(marked) >= 0.9 * len(pictures), "the model misses the mark: nothing to explain"
    return np.mean([quadrant(heatmap) == corner for heatmap in marked])


@pytest.mark.parametrize("corner", CORNERS)
def test_the_heat_peaks_in_the_corner_that_decides_the_class(corner_models, corner):
    pixels, targets = corner_pictures(corner, 20, seed=7)  # pictures the model never saw
    assert share_peaking_in(corner_models[corner], pixels[targets == 1], corner) >= 0.8


def test_negative_twin_a_model_trained_on_the_other_corner_does_not_peak_top_left(
        corner_models):
    pixels, targets = corner_pictures("bottom_right", 20, seed=7)
    assert share_peaking_in(corner_models["bottom_right"], pixels[targets == 1],
                            "top_left") <= 0.2


def test_a_model_retrained_from_a_kapps_export_is_explained_through_both_nestings(
        corner_models):
    """`kapps retrain --weights model.keras` nests the export's layers up to its head (its
    architecture nested inside) and adds a new head with the same layer names. Given the
    old head's weights, the new model must look where the old one did."""
    import keras

    from retrain.prediction.explain import GradCam

    loaded = corner_models["top_left"].model
    trunk = keras.Model(loaded.inputs, loaded.layers[-2].output, name="transfer_base")
    pixels = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Dropout(0.2, name="head_dropout")(trunk(pixels))
    head = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")
    model = keras.Model(pixels, head(x))
    head.set_weights(loaded.get_layer("predictions").get_weights())
    gradcam = GradCam(model)
    assert gradcam.layer == "conv3"
    pictures, targets = corner_pictures("top_left", 10, seed=7)
    heatmaps, scores = gradcam(pictures[targets == 1].astype("float32"))
    assert (scores.argmax(axis=1) == 1).all()
    assert [quadrant(h) for h in heatmaps].count("top_left") >= 8


def marked_picture_file(folder, corner, name, size=(96, 64)):
    """A PNG of a `mark` picture (the square in `corner`) stretched to `size` (width,
    height), so the overlay's aspect can be told from the model's square input."""
    from PIL import Image

    pixels, targets = corner_pictures(corner, 1, seed=11)
    path = os.path.join(folder, name)
    Image.fromarray(pixels[targets == 1][0]).resize(size, Image.NEAREST).save(path)
    return path


def run_cli(capsys, *argv):
    from retrain.cli.predict import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_explain_writes_overlays_and_a_heatmap_grid_per_picture(
        corner_models, tmp_path, capsys):
    model_dir = os.path.dirname(corner_models["top_left"].model_path)
    pictures = [marked_picture_file(tmp_path, "top_left", "wide.png"),
                marked_picture_file(tmp_path, "top_left", "tall.png", size=(40, 80))]
    out_dir = tmp_path / "why"
    code, out, err = run_cli(capsys, "--model", model_dir, "--json", "--explain", out_dir,
                             *pictures)
    assert code == 0, err
    assert f"wrote 2 explanation(s) to {out_dir}" in err
    document = json.loads(out)
    assert document["answered_by"] == "TensorFlow on model.keras"
    expected = corner_models["top_left"].predict(pictures)
    for result, path, want in zip(document["results"], pictures, expected):
        explanation = result["explanation"]
        assert explanation["label"] == result["predictions"][0]["label"] == "mark"
        assert explanation["layer"] == "conv3"  # the nested architecture's last conv
        grid = np.array(explanation["heatmap"])
        assert grid.shape == (12, 12)  # the feature map's own size: 48 px / 4
        assert grid.min() >= 0 and grid.max() == 1
        assert quadrant(grid) == "top_left"  # rows top first, as the picture
        assert [p["score"] for p in result["predictions"]] == pytest.approx(
            [p.score for p in want.predictions], abs=1e-4)
        with Image.open(explanation["overlay"]) as overlay, Image.open(path) as picture:
            assert overlay.format == "PNG"
            assert overlay.width / overlay.height == pytest.approx(
                picture.width / picture.height, rel=0.02)
    assert sorted(os.listdir(out_dir)) == ["tall_gradcam.png", "wide_gradcam.png"]


def test_cli_explain_layer_names_another_feature_map(corner_models, tmp_path, capsys):
    model_dir = os.path.dirname(corner_models["top_left"].model_path)
    picture = marked_picture_file(tmp_path, "top_left", "mark.png")
    code, out, err = run_cli(capsys, "--model", model_dir, "--json", "--explain", tmp_path,
                             "--explain_layer", "conv2", picture)
    assert code == 0, err
    explanation = json.loads(out)["results"][0]["explanation"]
    assert explanation["layer"] == "conv2"
    assert np.array(explanation["heatmap"]).shape == (24, 24)

    code, out, err = run_cli(capsys, "--model", model_dir, "--explain", tmp_path,
                             "--explain_layer", "features", picture)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("error: --explain_layer features:") and "4-D" in line

    code, out, err = run_cli(capsys, "--model", model_dir, "--explain", tmp_path,
                             "--explain_layer", "conv9", picture)
    assert code == 2
    [line] = err.splitlines()
    assert "conv9" in line and "conv3" in line  # names the layers it has


@pytest.mark.parametrize("model_file", ["model.tflite", "model.onnx", "graph.pb",
                                        "saved_model/saved_model.pb"])
def test_explain_on_an_export_without_gradients_is_one_line_before_any_work(
        tmp_path, model_file):
    """Checked before anything loads: the file is never read, TensorFlow never imported."""
    import subprocess
    import sys

    from probes import WITHOUT_TENSORFLOW

    path = tmp_path / model_file
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"never read")
    (path.parent / "labels.txt").write_text("plain\nmark\n")
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"never decoded")
    model = path.parent if model_file.endswith("saved_model.pb") else path
    done = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "predict", "--model",
                           str(model), "--explain", str(tmp_path / "why"), str(picture)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: --explain: explanations need the model.keras")
    assert not (tmp_path / "why").exists()


def test_overlay_draws_chinese_answers_with_every_glyph(tmp_path):
    """matplotlib warns `Glyph ... missing` for a character its font lacks: an error here."""
    import warnings

    from retrain.prediction.explain import save_overlay
    from retrain.prediction.predictor import Prediction

    picture = np.full((30, 60, 3), 120, np.uint8)
    heatmap = np.eye(6, dtype=np.float32)
    answers = [Prediction("mark", 0.9, "角落标记"), Prediction("plain", 0.1, "ねこ 고양이")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_overlay(picture, heatmap, answers, tmp_path / "zh.png")
    with Image.open(tmp_path / "zh.png") as overlay:
        assert overlay.size == (512, 256)


def test_a_picture_a_few_pixels_thin_still_gets_its_overlay(tmp_path):
    """3000x2 scaled to 512 px is under one pixel high: matplotlib cannot write that."""
    from retrain.prediction.explain import save_overlay
    from retrain.prediction.predictor import Prediction

    save_overlay(np.full((2, 3000, 3), 90, np.uint8), np.ones((1, 6), np.float32),
                 [Prediction("mark", 0.9, "mark")], tmp_path / "thin.png")
    with Image.open(tmp_path / "thin.png") as overlay:
        assert overlay.size[0] == 512 and overlay.size[1] >= 1


import kapps  # noqa: E402  (the registry's names, for the parametrisation below)

# Tracing Grad-CAM through these takes 4 to 7 s each on two cores (their layer is still
# found): the others stand for them, the same families at fewer layers.
HEAVY_GRADIENTS = {"densenet121", "inception_v3", "resnet50", "mobilenet_v3_large"}


def kapps_classifier(name, frozen=True, nested=True):
    """A classifier as `kapps retrain` builds one on the registry architecture `name`, at
    its smallest input: raw pixels -> resize -> preprocessing -> the architecture (a
    nested model, frozen as a head-only retrain leaves it, or its layers in the outer
    graph) -> pooling -> softmax. Returns (model, the architecture's last layer)."""
    import keras

    info = kapps.get_model_info(name)
    size = max(info.min_size, 32)
    pixels = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Resizing(size, size, name="resize")(pixels)
    x = kapps.preprocessing_layer(info.preprocessing)(x)
    if nested:
        backbone = kapps.create_model(name, include_top=False, weights=None,
                                      input_shape=(size, size, 3))
        backbone.trainable = not frozen
        x = backbone(x)
    else:
        backbone = kapps.create_model(name, include_top=False, weights=None, input_tensor=x)
        x = backbone.output
    pool = keras.layers.Flatten if info.feature_pooling == "flatten" \
        else keras.layers.GlobalAveragePooling2D
    x = pool(name="features")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(pixels, outputs), backbone.layers[-1]


@pytest.mark.parametrize("name", kapps.list_models())
def test_every_architecture_finds_its_last_feature_map(name):
    from retrain.prediction.explain import GradCam, find_layer

    model, last = kapps_classifier(name)
    assert find_layer(model) == last.name
    if name in HEAVY_GRADIENTS:
        return
    gradcam = GradCam(model)  # through a frozen base: no trainable variable records it
    heatmaps, scores = gradcam(np.random.default_rng(0).uniform(0, 255, (2, 40, 50, 3)))
    assert heatmaps.shape == (2,) + tuple(last.output.shape[1:3])
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert scores.shape == (2, 3) and np.allclose(scores.sum(axis=1), 1, atol=1e-5)


def test_an_architecture_flattened_into_the_classifier_is_explained_too():
    from retrain.prediction.explain import GradCam, find_layer

    model, last = kapps_classifier("small_cnn", nested=False)
    assert "small_cnn" not in [layer.name for layer in model.layers]  # no nested model
    assert find_layer(model) == last.name == "block3_conv1_relu"
    heatmaps, _ = GradCam(model)(np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)))
    assert heatmaps.shape == (1, 8, 8) and heatmaps.max() == 1


def test_negative_twin_a_dense_network_has_no_feature_map_to_explain():
    """A digits model of Flatten and Dense (as test_serve exports): one line, not a
    heatmap of the preprocessed pixels."""
    import keras

    from kapps.errors import UserError
    from retrain.prediction.explain import find_layer

    pixels = keras.Input((None, None, 3))
    x = keras.layers.Resizing(8, 8, name="resize")(pixels)
    x = kapps.Preprocess("unit")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(pixels, keras.layers.Dense(10, activation="softmax")(x))
    with pytest.raises(UserError, match="no convolutional feature map"):
        find_layer(model)


def test_serve_explain_answers_the_heatmap_beside_the_top_answers(corner_models, tmp_path):
    pytest.importorskip("fastapi", reason="kapps serve needs fastapi: pip install -e '.[dev]'")
    import base64
    import io

    from fastapi.testclient import TestClient

    from retrain.serving import create_app

    picture = marked_picture_file(tmp_path, "top_left", "mark.png")
    body = {"b64": base64.b64encode(open(picture, "rb").read()).decode()}
    with TestClient(create_app({"corner": corner_models["top_left"]})) as client:
        answer = client.post("/v1/models/corner:explain?top_k=2", json=body)
        classified = client.post("/v1/models/corner:classify?top_k=2", json=body).json()
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    assert [p["label"] for p in answer["predictions"]] == \
        [p["label"] for p in classified["predictions"]] == ["mark", "plain"]
    assert [p["score"] for p in answer["predictions"]] == pytest.approx(
        [p["score"] for p in classified["predictions"]], abs=1e-4)
    assert answer["label"] == "mark" and answer["layer"] == "conv3"
    assert quadrant(np.array(answer["heatmap"])) == "top_left"
    with Image.open(io.BytesIO(base64.b64decode(answer["overlay"]))) as overlay:
        assert overlay.format == "PNG" and overlay.size == (96, 64)  # the picture's own size


def test_serve_explain_refuses_a_model_without_a_feature_map_in_one_line(tmp_path):
    """The digits network of test_serve is dense: 501 and why, not a heatmap of pixels."""
    pytest.importorskip("fastapi", reason="kapps serve needs fastapi: pip install -e '.[dev]'")
    from fastapi.testclient import TestClient

    from retrain.serving import create_app
    from test_serve import export_digits_model, png_bytes

    model_dir = export_digits_model(str(tmp_path / "digits"))
    with TestClient(create_app({"digits": model_dir})) as client:
        answer = client.post("/v1/models/digits:explain", content=png_bytes(
            np.zeros((8, 8), np.uint8)), headers={"Content-Type": "image/png"})
    assert answer.status_code == 501
    assert answer.json()["error"].startswith("model 'digits': model ")
    assert "no convolutional feature map" in answer.json()["error"]
