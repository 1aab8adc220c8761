"""Grad-CAM: where the model looked for its answer (`retrain.explain`, `Predictor.explain`,
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
