"""Every format answers the same: the scores of `model.keras` and `graph.pb` for one
picture differ by at most `TOLERANCE`, for every kind of picture a user's folder holds.

`FORMATS` maps a format's name to a function `(export folder, picture paths) -> scores`
(one row per picture, in labels.txt order); a new format (SavedModel, LiteRT, ONNX)
plugs in with one entry. `model.keras` through `kapps predict` is the reference.
"""
import contextlib
import io
import json

import imagegen
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kapps
from retrain import retrain
from retrain.cli.predict import main as predict_main

TOLERANCE = 1e-4
SIZE = (37, 29)  # not the model's size, so every path resizes


def _kapps_predict(model, labels_file, paths):
    """Scores through the `kapps predict` command, ordered as labels.txt."""
    labels = labels_file.read_text("utf-8").split()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = predict_main(["--model", str(model), "--labels", str(labels_file), "--json",
                             "--top_k", str(len(labels))] + [str(p) for p in paths])
    assert code == 0
    rows = []
    for result in json.loads(out.getvalue())["results"]:
        scores = {p["label"]: p["score"] for p in result["predictions"]}
        rows.append([scores[label] for label in labels])
    return np.array(rows)


def _tf1_client(export, paths):
    """retrain.py's own client: the file's bytes into `DecodeJpeg/contents:0`."""
    graph_def = tf.compat.v1.GraphDef.FromString((export / "graph.pb").read_bytes())
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return np.concatenate([session.run("final_result:0", {
                "DecodeJpeg/contents:0": open(path, "rb").read()}) for path in paths])


FORMATS = {
    "model.keras": lambda export, paths: _kapps_predict(export, export / "labels.txt", paths),
    "graph.pb (kapps predict)": lambda export, paths: _kapps_predict(
        export / "graph.pb", export / "labels.txt", paths),
    "graph.pb (TF1 client)": _tf1_client,
}
REFERENCE = "model.keras"


def _rgba_with_transparency(path):
    """Opaque, half-transparent and clear pixels, composited on white by every reader."""
    pixels = imagegen.image_array((40, 160, 90), SIZE, noise=60, seed=5)
    alpha = np.tile(np.linspace(0, 255, SIZE[0]).astype(np.uint8), (SIZE[1], 1))
    Image.fromarray(np.dstack([pixels, alpha]), "RGBA").save(path)
    return path


def _cmyk_jpeg(path):
    """A CMYK JPEG with noise (imagegen's solid conversion keeps CMYK's K at 0)."""
    pixels = imagegen.image_array((200, 60, 60), SIZE, noise=60, seed=6)
    Image.fromarray(pixels, "RGB").convert("CMYK").save(path, quality=90)
    return path


# kind -> function writing one picture of that kind at the given path (its extension).
KINDS = {
    "png": ("png", lambda p: imagegen.write_image(p, (220, 40, 40), SIZE, noise=60, seed=1)),
    "jpeg": ("jpg", lambda p: imagegen.write_image(p, (40, 200, 40), SIZE, noise=60, seed=2)),
    "palette": ("png", lambda p: imagegen.write_palette_png_with_transparency(p, SIZE)),
    "16-bit": ("png", lambda p: imagegen.write_image(p, (120, 90, 200), SIZE, mode="I;16",
                                                     noise=60, seed=3)),
    "rgba": ("png", _rgba_with_transparency),
    "grey": ("png", lambda p: imagegen.write_image(p, (90, 90, 90), SIZE, mode="L", noise=60,
                                                   seed=4)),
    "cmyk-jpeg": ("jpg", _cmyk_jpeg),
    "exif-rotated-jpeg": ("jpg", lambda p: imagegen.write_exif_rotated_jpeg(p, SIZE, 6)),
    "gif": ("gif", lambda p: imagegen.write_animated_gif(p, ((30, 40, 220), (250, 0, 0)), SIZE)),
    "bmp": ("bmp", lambda p: imagegen.write_image(p, (40, 40, 220), SIZE, noise=60, seed=7)),
    "webp": ("webp", lambda p: imagegen.write_image(p, (220, 220, 40), SIZE, noise=60, seed=8,
                                                    lossless=True)),
}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A small classifier of three colours, exported with its graph.pb; trained for one
    epoch only, so its scores are far from 0 and 1 and a difference shows."""
    root = tmp_path_factory.mktemp("parity")
    pictures = imagegen.make_class_folder(root / "pictures", {"red": 8, "green": 8,
                                                              "blue": 8}, size=24, noise=60)
    weights = root / "lenet5.weights.h5"
    keras.utils.set_random_seed(2)
    kapps.create_model("lenet5", include_top=False, input_shape=(24, 24, 3)).save_weights(weights)
    out = root / "export"
    retrain(image_dir=str(pictures), architecture="lenet5", weights=str(weights),
            image_size=24, epochs=1, learning_rate=0.003, verbose=0, output_dir=str(out),
            output_graph=str(out / "graph.pb"), bottleneck_dir=str(root / "cache"))
    return out


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    return {kind: str(write(str(root / f"{kind}.{ext}"))) for kind, (ext, write) in KINDS.items()}


def max_differences(export, pictures):
    """{format: {kind: max abs score difference from the reference}}."""
    kinds = list(pictures)
    paths = [pictures[k] for k in kinds]
    reference = FORMATS[REFERENCE](export, paths)
    assert reference.shape == (len(kinds), 3) and reference.max() < 0.999  # not saturated
    return {name: dict(zip(kinds, np.abs(run(export, paths) - reference).max(axis=1).tolist()))
            for name, run in FORMATS.items() if name != REFERENCE}


def test_every_format_gives_the_same_scores_for_every_kind_of_picture(export, pictures):
    differences = max_differences(export, pictures)
    for name, by_kind in differences.items():
        print(f"\n{name}: " + ", ".join(f"{k} {v:.1e}" for k, v in by_kind.items()))
    worst = {(name, kind): d for name, by_kind in differences.items()
             for kind, d in by_kind.items() if d > TOLERANCE}
    assert not worst, f"scores differ from {REFERENCE} by more than {TOLERANCE}: {worst}"
