"""Models that leave kapps: a self-contained model.keras, SavedModel, LiteRT and ONNX.

The module fixture trains a SmallCNN (BatchNorm and Dropout inside, which an export in
training mode would get wrong) on three noisy colours and asks `retrain` for every
format at once, so the checks below run on files made the way a user makes them. Each
export must give the scores of model.keras (float: within 1e-4; int8: the same answers),
and predicting on .tflite and .onnx must work with TensorFlow and Keras unimportable.
"""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagegen
from probes import ENTRY_HOLDING_BACK, WITHOUT_TENSORFLOW
from kapps.errors import UserError
from retrain.data import images
from retrain.prediction.backends.resize import resize_bilinear
from retrain.cli.export import main as export_main
from retrain.prediction.predictor import Predictor

REPO = str(Path(__file__).resolve().parents[1])
SIZE = 16
FLOAT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained export folder with saved_model/, model.tflite and model.onnx beside it."""
    import retrain

    root = tmp_path_factory.mktemp("exports")
    image_dir = imagegen.make_class_folder(root / "colours", {"red": 16, "green": 16, "blue": 16},
                                           size=(24, 20), ext=".jpg", noise=30)
    out = root / "out"
    retrain.retrain(image_dir=image_dir, architecture="small_cnn", weights="none",
                    fine_tune="all", image_size=SIZE, epochs=4, learning_rate=0.01,
                    train_batch_size=8, testing_percentage=25, validation_percentage=15,
                    verbose=0, output_dir=str(out), bottleneck_dir=str(root / "cache"),
                    saved_model_dir=str(out / "saved_model"),
                    tflite_output_file=str(out / "model.tflite"),
                    onnx_output_file=str(out / "model.onnx"))
    return out


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Pictures of other sizes, kinds and shapes than the training ones (resizing matters)."""
    folder = tmp_path_factory.mktemp("pictures")
    write = imagegen.write_image
    return [write(folder / "red.jpg", (220, 30, 30), size=(50, 37), noise=20),
            write(folder / "green_tall.png", (30, 200, 40), size=(9, 41), noise=20),
            write(folder / "blue_rgba.png", (30, 60, 220), size=(33, 33), mode="RGBA"),
            write(folder / "tiny.bmp", (30, 60, 220), size=(5, 3), noise=5)]


@pytest.fixture(scope="module")
def keras_scores(run, pictures):
    return np.stack(Predictor(run).scores(pictures))


def test_resize_bilinear_matches_tf_image_resize_bit_for_bit():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for height, width, out_h, out_w in [(37, 50, 16, 16), (3, 5, 16, 16), (41, 9, 7, 30),
                                        (16, 16, 16, 16), (1, 1, 4, 4), (8, 8, 224, 224),
                                        (375, 500, 224, 224)]:
        pixels = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        expected = tf.image.resize(tf.cast(pixels, tf.float32), [out_h, out_w]).numpy()
        np.testing.assert_array_equal(resize_bilinear(pixels, out_h, out_w), expected)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "unit", "raw"])
def test_builtin_preprocessing_equals_the_kapps_layer(mode):
    import keras
    import kapps

    keras.utils.set_random_seed(0)
    pixels = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    conv = keras.layers.Conv2D(5, 3, activation="relu")
    head = keras.layers.Dense(3, activation="softmax")
    outputs = []
    for preprocess in (kapps.Preprocess(mode), kapps.preprocessing_layer(mode)):
        inputs = keras.Input((SIZE, SIZE, 3))
        x = keras.layers.GlobalAveragePooling2D()(conv(preprocess(inputs)))
        outputs.append(keras.Model(inputs, head(x)).predict(pixels, verbose=0))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(kapps.preprocessing_layer(mode)(pixels),
                               kapps.preprocess_input(pixels, mode), rtol=0, atol=1e-5)


# Loads each model.keras given on the command line with plain Keras (safe mode), with
# kapps, retrain and tuning unimportable, and prints its scores or the error.
_PLAIN_KERAS = r"""
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("kapps", "retrain", "tuning"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np, keras
pixels = np.load(sys.argv[1])
answers = {}
for path in sys.argv[2:]:
    try:
        model = keras.saving.load_model(path, safe_mode=True)
        answers[path] = model.predict(pixels, verbose=0).tolist()
    except Exception as err:
        answers[path] = str(err).splitlines()[0]
assert not [m for m in sys.modules if m.split(".")[0] in ("kapps", "retrain", "tuning")]
print(json.dumps(answers))
"""


def test_model_keras_loads_and_scores_without_kapps(tmp_path):
    import keras
    import kapps

    keras.utils.set_random_seed(0)
    pixels = np.random.default_rng(2).uniform(0, 255, (3, 20, 24, 3)).astype("float32")
    np.save(tmp_path / "pixels.npy", pixels)
    expected = {}
    for mode in ("caffe", "tf", "torch", "unit", "old_export"):
        inputs = keras.Input((None, None, 3))
        x = keras.layers.Resizing(SIZE, SIZE, name="resize")(inputs)
        x = (kapps.Preprocess("tf") if mode == "old_export"
             else kapps.preprocessing_layer(mode))(x)
        x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(x))
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
        path = str(tmp_path / f"{mode}.keras")
        model.save(path)
        expected[path] = model.predict(pixels, verbose=0)
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PLAIN_KERAS, str(tmp_path / "pixels.npy"), *expected],
        capture_output=True, text=True, check=True, cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    answers = json.loads(done.stdout.splitlines()[-1])
    old = str(tmp_path / "old_export.keras")
    assert isinstance(answers.pop(old), str)  # the kapps layer needs kapps: why the change
    for path, scores in answers.items():
        np.testing.assert_allclose(scores, expected[path], rtol=0, atol=1e-6, err_msg=path)


@pytest.mark.parametrize("export", ["saved_model", "model.tflite", "model.onnx"])
def test_float_exports_score_as_model_keras(run, pictures, keras_scores, export):
    predictor = Predictor(run / export, labels=run / "labels.txt")
    batched = np.stack(predictor.scores(pictures))
    np.testing.assert_allclose(batched, keras_scores, rtol=0, atol=FLOAT_TOLERANCE)
    one = predictor.scores([pictures[0]])[0]
    from_array = predictor.scores([images.load_image(pictures[1])])[0]
    np.testing.assert_allclose(one, keras_scores[0], rtol=0, atol=FLOAT_TOLERANCE)
    np.testing.assert_allclose(from_array, keras_scores[1], rtol=0, atol=FLOAT_TOLERANCE)
    answers = [r.predictions[0].label for r in predictor.predict(pictures[:3])]
    assert answers == ["red", "green", "blue"]


def test_retrain_flags_write_measured_exports(run):
    report = json.loads((run / "export_report.json").read_text())
    assert set(report) == {"saved_model", "model.tflite", "model.onnx"}
    for row in report.values():
        assert row["test_pictures"] >= 10
        assert row["top1_agreement"] == 1.0
        assert row["test_accuracy"] == row["keras_test_accuracy"]
        assert row["max_score_difference"] < FLOAT_TOLERANCE
        assert row["size_bytes"] > 10_000


def test_saved_model_serves_pixels_and_encoded_bytes(run, pictures, keras_scores):
    import tensorflow as tf

    from retrain.formats.saved_model import BYTES_SIGNATURE, OUTPUT, PIXELS_SIGNATURE

    loaded = tf.saved_model.load(str(run / "saved_model"))
    assert set(loaded.signatures) == {PIXELS_SIGNATURE, BYTES_SIGNATURE}
    assert (run / "saved_model" / "assets" / "labels.txt").read_text() == \
        (run / "labels.txt").read_text()
    pngs = []
    for path in pictures[1:3]:  # PNG decodes the same in TF and Pillow
        buffer = io.BytesIO()
        Image.fromarray(images.load_image(path)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    scores = loaded.signatures[BYTES_SIGNATURE](image_bytes=tf.constant(pngs))[OUTPUT]
    np.testing.assert_allclose(scores.numpy(), keras_scores[1:3], rtol=0, atol=FLOAT_TOLERANCE)
    # The JPEG decoded as prediction decodes it: at the reduced scale for the model's side.
    pixels = images.load_image(pictures[0], min_side=SIZE).astype("float32")[None]
    scores = loaded.signatures[PIXELS_SIGNATURE](pixels=tf.constant(pixels))[OUTPUT]
    np.testing.assert_allclose(scores.numpy()[0], keras_scores[0], rtol=0, atol=FLOAT_TOLERANCE)


def test_tf_serving_version_folder_is_found_with_its_labels(run, pictures, keras_scores, tmp_path):
    from retrain.export.convert import export_model

    export_model(run, "saved_model", output=tmp_path / "serving" / "colours" / "1")
    predictor = Predictor(tmp_path / "serving" / "colours")
    assert predictor.labels == ["blue", "green", "red"]
    np.testing.assert_allclose(np.stack(predictor.scores(pictures)), keras_scores, rtol=0,
                               atol=FLOAT_TOLERANCE)


def test_int8_keeps_the_answers_and_the_cli_prints_the_table(run, capsys):
    code = export_main(["--model", str(run), "--format", "litert", "--quantize", "int8"])
    out = capsys.readouterr().out
    assert code == 0
    header, keras_line, int8_line, footer, verdict = out.strip().splitlines()
    assert header.split()[:2] == ["file", "format"]
    assert keras_line.startswith("model.keras") and int8_line.startswith("model_int8.tflite")
    assert "litert int8" in int8_line and footer.startswith("on ")
    assert verdict.startswith("model_int8.tflite (int8): top-1 agreement with model.keras ")
    assert verdict.endswith("keeps the promise.")
    row = json.loads((run / "export_report.json").read_text())["model_int8.tflite"]
    assert row["top1_agreement"] >= 0.99 and row["held_out_agreement"] >= 0.99
    assert row["keras_test_accuracy"] - row["test_accuracy"] <= 0.005
    assert row["size_bytes"] < 0.5 * os.path.getsize(run / "model.tflite")


def test_timing_an_int8_candidate_prints_nothing(run):
    """LiteRT announces its XNNPACK delegate on stderr the first time a process makes an
    interpreter (once per process, so a fresh one is watched)."""
    code = ("import sys, numpy as np; from retrain.formats.int8 import latency_ms; "
            f"latency_ms(open(sys.argv[1], 'rb').read(), np.zeros((1, {SIZE}, {SIZE}, 3), "
            "np.float32), repeats=1)")
    done = subprocess.run([sys.executable, "-c", code, str(run / "model.tflite")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_int8_calibrates_on_training_pictures_only(run, tmp_path):
    from retrain.export.convert import calibration_paths, export_model

    split = json.loads((run / "split.json").read_text())
    image_dir = json.loads((run / "metrics.json").read_text())["config"]["image_dir"]
    calibrate, held_out = ({os.path.relpath(path, image_dir).replace(os.sep, "/")
                            for path in paths} for paths in calibration_paths(run))
    assert calibrate | held_out == set(split["train"])  # fewer than 600: all of them
    assert not calibrate & held_out  # agreement is checked on pictures not calibrated on
    for label in ("blue", "green", "red"):  # every class, half of it in each
        counts = [sum(p.startswith(label + "/") for p in chosen)
                  for chosen in (calibrate, held_out)]
        assert min(counts) >= 1 and abs(counts[0] - counts[1]) <= 1

    moved = tmp_path / "moved"  # the image folder is gone: nothing to calibrate on
    moved.mkdir()
    for name in ("model.keras", "labels.txt", "split.json"):
        (moved / name).write_bytes((run / name).read_bytes())
    (moved / "metrics.json").write_text(json.dumps({"config": {
        "image_dir": str(tmp_path / "gone"), "image_size": SIZE}}))
    with pytest.raises(UserError, match="--quantize int8 calibrates on the training pictures"):
        export_model(moved, "litert", "int8")
    assert not (moved / "model_int8.tflite").exists()




def assert_command_scores(run, expected_scores, probe, *args):
    """`kapps predict --json ARGS` in a fresh process under `probe` (tests/probes.py) gives
    every picture's `expected_scores` within the float tolerance."""
    command = [sys.executable, "-c", probe, "predict", "--json", "--top_k", "3", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr[-2000:]
    labels = (run / "labels.txt").read_text().split()
    for result, expected in zip(json.loads(done.stdout)["results"], expected_scores):
        scores = {p["label"]: p["score"] for p in result["predictions"]}
        np.testing.assert_allclose([scores[label] for label in labels], expected, rtol=0,
                                   atol=FLOAT_TOLERANCE)


@pytest.mark.parametrize("export", ["model.tflite", "model.onnx"])
def test_predict_without_tensorflow(run, pictures, keras_scores, export):
    assert_command_scores(run, keras_scores, WITHOUT_TENSORFLOW, "--model", str(run / export),
                          "--threads", "1", *pictures)


def test_predict_on_model_keras_loads_tensorflow_without_what_it_does_not_use(
        run, pictures, keras_scores):
    # scikit-learn, scipy and matplotlib, loaded by Keras, would cost `kapps predict` 1.2 s.
    assert_command_scores(run, keras_scores, ENTRY_HOLDING_BACK, "--model", str(run),
                          "--runtime", "tensorflow", *pictures)


def test_bad_requests_are_one_line_naming_the_fix(run, tmp_path, capsys, monkeypatch):
    for argv, words in [(["--format", "tflite"], ["--format 'tflite'", "litert"]),
                        (["--format", "onnx", "--quantize", "int8"], ["--quantize int8", "onnx"]),
                        (["--format", "litert", "--quantize", "int4"], ["dynamic, float16, int8"])]:
        assert export_main(["--model", str(run), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert export_main(["--model", str(run / "model.onnx"), "--format", "litert"]) == 2
    assert "model.keras" in capsys.readouterr().err

    fake = tmp_path / "model.tflite"
    fake.write_bytes((run / "model.onnx").read_bytes())  # an ONNX file named .tflite
    with pytest.raises(UserError, match="cannot load LiteRT model .*kapps export --format litert"):
        Predictor(fake, labels=run / "labels.txt")
    fake = tmp_path / "model.onnx"
    fake.write_bytes((run / "model.tflite").read_bytes())
    with pytest.raises(UserError, match="cannot load ONNX model .*kapps export --format onnx"):
        Predictor(fake, labels=run / "labels.txt")

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # not installed
    with pytest.raises(UserError, match=r"ai_edge_litert package.*pip install ai-edge-litert "
                                        r".*'kapps\[litert\]'"):
        Predictor(run / "model.tflite")

    import importlib.util

    find_spec = importlib.util.find_spec  # a small device: no TensorFlow

    def without_tensorflow(name, *args):
        return None if name == "tensorflow" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_tensorflow)
    with pytest.raises(UserError, match="needs TensorFlow.*kapps export --format litert"):
        Predictor(run)


def test_a_failed_export_leaves_the_good_file_in_place(run, monkeypatch):
    import keras

    from retrain.export.convert import export_model

    def half_written(model, path, **kwargs):
        Path(path).write_bytes(b"half")
        raise RuntimeError("converter crashed")

    def crash(*args):  # the SavedModel is written by then; its labels are not
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(keras.Model, "export", half_written)
    monkeypatch.setattr("retrain.formats.saved_model.shutil.copyfile", crash)
    before = {name: (run / name).read_bytes() for name in ("model.tflite", "model.onnx")}
    pb_before = (run / "saved_model" / "saved_model.pb").read_bytes()
    listing = sorted(os.listdir(run))
    for format in ("litert", "onnx", "saved_model"):
        with pytest.raises(RuntimeError, match="converter crashed"):
            export_model(run, format)
    assert {name: (run / name).read_bytes() for name in before} == before
    assert (run / "saved_model" / "saved_model.pb").read_bytes() == pb_before
    assert sorted(os.listdir(run)) == listing  # no temporary file or folder left behind


def test_the_export_command_is_quiet_in_a_fresh_process(run, tmp_path):
    """TensorFlow's C++ start-up lines stay hidden: the converters load it after kapps did."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = tmp_path / "quiet.tflite"
    done = subprocess.run(
        [sys.executable, "-m", "kapps.cli", "export", "--model", str(run), "--format", "litert",
         "--output", str(out)],
        capture_output=True, text=True, timeout=600, env={**env, "PYTHONPATH": REPO}, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file()
    assert done.stderr.splitlines() == [f"wrote {out}"], done.stderr[-2000:]


def fragile_copy(run, dest):
    """The run's export with the same function but one channel 1000x wider after the
    first convolution (its BatchNorm scaled up, the next convolution's inputs down): one
    int8 range for the whole tensor then rounds every other channel to nothing."""
    import keras

    dest.mkdir()
    for name in ("labels.txt", "split.json", "metrics.json"):
        (dest / name).write_bytes((run / name).read_bytes())
    model = keras.saving.load_model(run / "model.keras")
    layers = {layer.name: layer for layer in _leaves(model)}
    gamma, beta, mean, var = layers["block1_conv1_bn"].get_weights()
    gamma[0], beta[0] = gamma[0] * 1000, beta[0] * 1000
    layers["block1_conv1_bn"].set_weights([gamma, beta, mean, var])
    (kernel,) = layers["block1_conv2"].get_weights()
    kernel[:, :, 0, :] /= 1000
    layers["block1_conv2"].set_weights([kernel])
    model.save(dest / "model.keras")
    return dest


def _leaves(model):
    import keras

    for layer in model.layers:
        yield from _leaves(layer) if isinstance(layer, keras.Model) else [layer]


def test_int8_keeps_harmful_layers_in_float_until_it_agrees(run, tmp_path, capsys,
                                                           keras_scores, pictures):
    fragile = fragile_copy(run, tmp_path / "fragile")
    np.testing.assert_allclose(np.stack(Predictor(fragile).scores(pictures)), keras_scores,
                               atol=1e-4)  # the same function in float
    code = export_main(["--model", str(fragile), "--format", "litert", "--quantize", "int8",
                        "--assert_agreement_at_least", "0.99"])
    out, err = capsys.readouterr()
    assert code == 0, err
    row = json.loads((fragile / "export_report.json").read_text())["model_int8.tflite"]
    assert row["plain_int8_held_out_agreement"] < 0.99  # plain int8 breaks it
    assert row["held_out_agreement"] >= 0.99 and row["top1_agreement"] >= 0.99
    assert row["float_layers"] and len(row["float_layers"]) == len(row["float_tensors"])
    assert row["size_bytes"] >= row["plain_int8_size_bytes"]
    assert "layer(s) kept in float: keeps the promise." in out
    assert "int8: plain full-integer agrees with model.keras on" in err

    # The same model, the same file: calibration, the layer search and the choice repeat.
    from retrain.export.convert import export_model

    first = (fragile / "model_int8.tflite").read_bytes()
    again = export_model(fragile, "litert", "int8")
    assert (fragile / "model_int8.tflite").read_bytes() == first
    assert again["float_layer_steps"] == row["float_layer_steps"]


def test_an_int8_export_below_the_promise_says_so_and_fails_the_assert(run, tmp_path, capsys,
                                                                     monkeypatch):
    from retrain.formats import int8

    fragile = fragile_copy(run, tmp_path / "fragile")
    monkeypatch.setattr(int8, "_layer_orders", lambda debugger: ([], []))  # nothing in float
    code = export_main(["--model", str(fragile), "--format", "litert", "--quantize", "int8",
                        "--assert_agreement_at_least", "0.99"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "BELOW the promise (99% agreement, at most 0.5 points of accuracy lost)" in out
    assert "try --quantize float16 or dynamic" in out
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: top-1 agreement with model.keras is ")
    assert "below --assert_agreement_at_least 0.99" in last
    assert (fragile / "model_int8.tflite").is_file()  # written all the same
