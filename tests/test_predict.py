"""Prediction end to end: a tiny exported model that tells solid colours apart.

The module fixture trains a small network on red, green and blue pictures and writes
it as `kapps retrain` exports it (model.keras, labels.txt, metrics.json), so each
test checks answers that are right for a reason, not just well-formed.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

from retrain.common import fonts
from retrain.data import images
from retrain.report import figures
from kapps.errors import UserError
from retrain.prediction.predictor import Predictor, predict
from retrain.cli.predict import SEPARATOR, SOME_UNREADABLE, main
from retrain.prediction.translations import load_translations

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
LABELS = list(COLOURS)


def solid(colour, size=(40, 48), noise=12, seed=0):
    """A picture of one colour with a little noise, shape (height, width, 3)."""
    rng = np.random.default_rng(seed)
    pixels = np.array(colour, np.float64) + rng.normal(0, noise, size + (3,))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def save(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import keras
    import kapps

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(32, 32, name="resize")(inputs)
    x = kapps.Preprocess("unit")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    x = np.stack([solid(COLOURS[name], (32, 32), seed=i) for i in range(20) for name in LABELS])
    y = np.array([k for _ in range(20) for k in range(len(LABELS))])
    model.fit(x.astype("float32"), y, epochs=40, batch_size=60, verbose=0)

    folder = tmp_path_factory.mktemp("exported")
    model.save(folder / "model.keras")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps({"config": {"image_size": 32}}))
    return folder


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir)


@pytest.fixture
def pictures(tmp_path):
    """One picture per colour in a folder tree, in different sizes and formats."""
    folder = tmp_path / "pictures"
    return {
        "red": save(folder / "a_red.jpg", solid(COLOURS["red"], (50, 30), seed=1)),
        "green": save(folder / "sub" / "b_green.png", solid(COLOURS["green"], (24, 64), seed=2)),
        "blue": save(folder / "sub" / "c_blue.bmp", solid(COLOURS["blue"], (33, 33), seed=3)),
    }


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_top_k_is_sorted_right_and_scores_sum_to_one(predictor, pictures):
    results = predictor.predict(list(pictures.values()), top_k=3)
    assert [r.path for r in results] == list(pictures.values())
    for colour, result in zip(pictures, results):
        assert result.error is None
        assert result.predictions[0].label == colour
        scores = [p.score for p in result.predictions]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)  # top 3 of 3 classes: all of them
        assert {p.label for p in result.predictions} == set(LABELS)
    assert [len(r.predictions) for r in predictor.predict(list(pictures.values()), top_k=2)] \
        == [2, 2, 2]
    assert predictor.predict([]) == []


def test_single_picture_batch_and_array_agree(predictor, pictures):
    batched = predictor.scores(list(pictures.values()))
    for path, scores in zip(pictures.values(), batched):
        one = predictor.scores([path])[0]
        from_array = predictor.scores([images.load_image(path)])[0]
        np.testing.assert_allclose(one, scores, atol=1e-5)
        np.testing.assert_allclose(from_array, scores, atol=1e-5)
    [result] = predictor.predict(solid(COLOURS["blue"]))
    assert result.path is None and result.predictions[0].label == "blue"


def test_folder_with_broken_files_answers_the_rest(model_dir, pictures, tmp_path, capsys):
    folder = tmp_path / "pictures"
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "sub" / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a picture")
    code, out, err = run_cli(capsys, "--model", model_dir, folder)
    assert code == 3  # some pictures answered, some not readable: not 0, not a mistake
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 2
    assert any("broken.jpg" in line for line in error_lines)
    assert any("empty.png" in line for line in error_lines)
    blocks = [b.strip().splitlines() for b in out.split(SEPARATOR) if b.strip()]
    assert [b[0] for b in blocks] == sorted(pictures.values())
    for block, colour in zip(blocks, ["red", "green", "blue"]):
        assert len(block) == 4
        assert block[1].strip().startswith(f"{colour} (score = ")


def test_exit_status_is_2_when_nothing_can_be_read(model_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    code, out, err = run_cli(capsys, "--model", model_dir, broken, tmp_path / "missing.jpg")
    assert code == 2
    lines = err.splitlines()  # one error line per picture, no more
    assert [line.split(":")[1] for line in lines] == [
        f" cannot read image {broken}", f" cannot read image {tmp_path / 'missing.jpg'}"]


def test_one_unreadable_picture_is_one_error_line_and_exit_2(model_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    code, out, err = run_cli(capsys, "--model", model_dir, broken)
    assert code == 2 and out == ""
    assert err.startswith(f"error: cannot read image {broken}: ") and err.count("\n") == 1


def test_pictures_that_do_not_exist_are_answered_without_loading_the_model(
        model_dir, tmp_path, capsys, monkeypatch):
    from retrain.cli import predict as cli_predict

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli_predict, "Predictor", no_model)
    code, out, err = run_cli(capsys, "--model", model_dir, tmp_path / "typo.png")
    assert code == 2
    assert err == f"error: cannot read image {tmp_path / 'typo.png'}: no such file; check the path\n"


def test_translations_with_chinese_and_bom(model_dir, pictures, tmp_path, capsys):
    table = tmp_path / "zh.csv"
    table.write_bytes("red,红色\nGreen,绿色, 草\nblue,\n\n".encode("utf-8-sig"))
    assert load_translations(table) == {"red": "红色", "Green": "绿色, 草"}
    [red, green, blue] = predict(model_dir, list(pictures.values()), top_k=1,
                                 translations=table)
    assert red.predictions[0].translation == "红色"
    assert green.predictions[0].translation == "绿色, 草"  # matched despite the case
    assert blue.predictions[0].translation == "blue"      # empty translation: the label
    code, out, _ = run_cli(capsys, "--model", model_dir, "--translations", table,
                           pictures["red"])
    assert code == 0
    assert "红色 red (score = " in out


@pytest.mark.parametrize("text, problem, matched", [
    ("red;红色\ngreen;绿色\n", "line 1 'red;红色' has no comma", 0),
    ("red,红色\ngreen\t绿色\n", "line 2 'green\\t绿色' has no comma", 1),
    ("cat,猫\ndog,狗\n", "no line names one of its labels", 0),
])
def test_a_translations_file_that_does_not_fit_warns_once(model_dir, tmp_path, recwarn,
                                                          text, problem, matched):
    from retrain.prediction.translations import TranslationsWarning

    table = tmp_path / "zh.csv"
    table.write_text(text, encoding="utf-8")
    Predictor(model_dir, translations=table)
    caught = [str(w.message) for w in recwarn if w.category is TranslationsWarning]
    assert len(caught) == 1
    assert caught[0].startswith(f"translations file {table}: {problem}")
    assert caught[0].endswith(f"; {matched} of 3 labels translated")


def test_a_translations_file_that_fits_is_silent(model_dir, tmp_path, recwarn):
    table = tmp_path / "zh.csv"
    table.write_text("red,红色\n\ngreen,\n", encoding="utf-8")
    Predictor(model_dir, translations=table)
    assert not [w for w in recwarn if "translations" in str(w.message)]


def test_predicting_a_path_that_does_not_exist_raises(predictor, pictures, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such picture: .*a.png"):
        predictor.predict([pictures["red"], str(tmp_path / "a.png")])


def test_json_schema(model_dir, pictures, tmp_path, capsys):
    broken = save(tmp_path / "pictures" / "zz.png", solid((0, 0, 0)))
    with open(broken, "r+b") as f:
        f.truncate(40)
    code, out, _ = run_cli(capsys, "--model", model_dir, "--json", "--top_k", "2",
                           tmp_path / "pictures")
    assert code == SOME_UNREADABLE  # one of four could not be read; the others are answered
    document = json.loads(out)
    assert document["answered_by"] == "TensorFlow on model.keras"
    results = document["results"]
    assert [r["path"] for r in results] == sorted(list(pictures.values()) + [broken])
    for r in results[:3]:
        assert set(r) == {"path", "predictions"}
        assert len(r["predictions"]) == 2
        for p in r["predictions"]:
            assert set(p) == {"label", "translation", "score"}
            assert isinstance(p["score"], float) and 0 <= p["score"] <= 1
            assert p["translation"] == p["label"]
    assert set(results[3]) == {"path", "error"} and "zz.png" in results[3]["error"]


def test_save_figure_writes_pngs_headless(model_dir, pictures, tmp_path, capsys, recwarn,
                                          monkeypatch):
    monkeypatch.setattr(fonts, "_warned_missing_font", False)
    table = tmp_path / "zh.csv"
    table.write_text("red,红色\ngreen,绿色\nblue,蓝色\n", encoding="utf-8")
    out_dir = tmp_path / "figures"
    code, _, err = run_cli(capsys, "--model", model_dir, "--translations", table,
                           "--save_figure", out_dir, *pictures.values())
    assert code == 0
    written = sorted(os.listdir(out_dir))
    assert written == ["a_red.png", "b_green.png", "c_blue.png"]
    with Image.open(out_dir / "a_red.png") as img:
        assert img.format == "PNG" and img.width > 100
    missing_font = [w for w in recwarn if issubclass(w.category, fonts.MissingFontWarning)]
    assert bool(missing_font) == (fonts.font_for(["红色"]) is None)


def test_contact_sheet_above_the_single_figure_limit(predictor, tmp_path):
    arrays = [solid(COLOURS[LABELS[i % 3]], seed=i) for i in range(figures.MAX_SINGLE_FIGURES + 1)]
    results = predictor.predict(arrays)
    written = figures.save_figures(results, tmp_path, pictures=arrays)
    assert [os.path.basename(p) for p in written] == ["predictions_001.png"]
    assert os.listdir(tmp_path) == ["predictions_001.png"]  # no temporary file left


def test_cjk_font_is_found():
    """kapps depends on a CJK font package, so a fresh install has one."""
    font = fonts.font_for(["波斯猫"])
    assert font is not None
    from matplotlib import ft2font
    charmap = ft2font.FT2Font(font.get_file()).get_charmap()
    assert all(ord(c) in charmap for c in "波斯猫")


def test_cjk_rendering_draws_glyphs_not_boxes():
    """With a CJK font, different characters draw differently; boxes would all look alike."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def render(char):
        fig = Figure(figsize=(1, 1), dpi=50)
        fig.text(0.1, 0.1, char, fontproperties=fonts.font_for([char]), fontsize=30)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., 0]

    assert not np.array_equal(render("猫"), render("狗"))


def test_a_figure_with_chinese_labels_draws_every_glyph(tmp_path):
    """Chinese, Japanese and Korean class names in a confusion matrix: matplotlib warns
    `Glyph ... missing` for any character its font lacks, which fails this test."""
    import warnings

    classes = ["波斯猫", "哈士奇", "金鱼", "ねこ", "고양이"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures.plot_confusion_matrix(np.eye(5, dtype=int), classes, tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000


def test_without_a_cjk_font_one_warning_then_nothing(monkeypatch, tmp_path):
    """The font hint once, not followed by one `Glyph ... missing` warning per character."""
    import warnings

    monkeypatch.setattr(fonts, "_bundled_fonts", lambda: [])
    monkeypatch.setattr(fonts, "_installed_fonts", lambda: [])
    monkeypatch.setattr(fonts, "_warned_missing_font", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figures.plot_confusion_matrix(np.eye(2, dtype=int), ["波斯猫", "哈士奇"],
                                      tmp_path / "cm.png")
    assert [w.category for w in caught] == [fonts.MissingFontWarning]


def test_missing_cjk_font_warns_once_naming_a_package(monkeypatch):
    monkeypatch.setattr(fonts, "_bundled_fonts", lambda: [])
    monkeypatch.setattr(fonts, "_installed_fonts", lambda: [])
    monkeypatch.setattr(fonts, "_warned_missing_font", False)
    with pytest.warns(fonts.MissingFontWarning, match="pip install noto-cjk-sans-jp-regular"):
        assert fonts.font_for(["波斯猫"]) is None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fonts.font_for(["波斯猫"])  # a second time: silent
    assert fonts.font_for(["persian cat"]) is None  # the default font has these


def test_legacy_graph_gives_the_same_top1(model_dir, pictures, tmp_path):
    import keras
    import kapps.preprocessing  # noqa: F401  (registers kapps.Preprocess for loading)
    from retrain.formats.graph import write_frozen_graph

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    write_frozen_graph(model, legacy / "graph.pb")
    (legacy / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    paths = list(pictures.values())
    keras_top1 = [r.predictions[0].label for r in predict(model_dir, paths)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    graph_results = predict(legacy, paths + [str(broken)])
    assert [r.predictions[0].label for r in graph_results[:3]] == keras_top1 == LABELS
    assert "broken.jpg" in graph_results[3].error
    assert sum(p.score for p in graph_results[0].predictions) == pytest.approx(1, abs=1e-4)


def test_missing_and_damaged_model_are_one_line_errors(tmp_path, capsys, pictures):
    code, _, err = run_cli(capsys, "--model", tmp_path / "nowhere", pictures["red"])
    assert code == 2
    assert err.startswith("error: model not found:") and err.count("\n") == 1
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.keras").write_bytes(b"not a zip file")
    (damaged / "labels.txt").write_text("a\nb\n")
    code, _, err = run_cli(capsys, "--model", damaged, pictures["red"])
    assert code == 2
    assert err.startswith("error: cannot load model") and err.count("\n") == 1


def test_labels_not_matching_the_model(model_dir, tmp_path, capsys, pictures):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\n", encoding="utf-8")
    with pytest.raises(UserError, match="has 2 classes but model .* outputs 3"):
        Predictor(model_dir, labels=labels)
    code, _, err = run_cli(capsys, "--model", model_dir / "model.keras", "--labels", labels,
                           pictures["red"])
    assert code == 2 and "--labels" in err
    code, _, err = run_cli(capsys, "--model", model_dir / "model.keras", "--labels",
                           tmp_path / "none.txt", pictures["red"])
    assert code == 2 and "labels file not found" in err


def test_package_exports_predictor_and_predict(model_dir, pictures):
    """`retrain.predict(...)` is the function, also once its module is imported."""
    import retrain
    import retrain.prediction.predictor  # noqa: F401

    assert retrain.Predictor is Predictor
    [result] = retrain.predict(model_dir, [pictures["green"]], top_k=1)
    assert result.predictions[0].label == "green"


def test_show_without_a_display_says_to_save_instead(model_dir, pictures, capsys):
    import matplotlib
    matplotlib.use("Agg")
    code, out, err = run_cli(capsys, "--model", model_dir, "--show", pictures["red"])
    assert code == 2 and "--save_figure" in err
    assert out == ""  # refused before any work


def test_the_command_line_predicts_in_a_fresh_process_and_quietly(model_dir, pictures):
    """A new process has loaded none of kapps' layers: the model must still load (its
    Preprocess layer registers on demand), and TensorFlow's start-up lines stay hidden."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "kapps.cli", "predict", "--model",
                           str(model_dir), str(pictures["red"])], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[1].strip().startswith("red (score = ")
    assert done.stderr == ""


def test_camera_photo_scores_the_same_through_model_keras_graph_pb_and_training(model_dir,
                                                                               tmp_path):
    """A 4000x3000 JPEG is decoded at reduced scale by every path, to the same pixels."""
    import keras
    import tensorflow as tf

    import imagegen
    from retrain.formats.graph import write_frozen_graph
    from retrain.data.inputs import decode_resize

    photo = imagegen.write_camera_jpeg(tmp_path / "IMG_0001.jpg")
    keras_predictor = Predictor(model_dir)
    model = keras_predictor.model
    graph = tmp_path / "graph.pb"
    write_frozen_graph(model, str(graph))
    graph_predictor = Predictor(graph, labels=model_dir / "labels.txt")
    assert graph_predictor._backend.min_side == keras_predictor._backend.min_side == 32

    from_keras = keras_predictor.scores([photo])[0]
    np.testing.assert_allclose(graph_predictor.scores([photo])[0], from_keras, atol=1e-4)
    np.testing.assert_allclose(keras_predictor.scores([photo, photo])[1], from_keras, atol=1e-5)
    # Training decodes it as prediction does (a full decode gives another picture).
    trained_on = decode_resize(tf.constant(photo), 32)
    predicted_on = keras.layers.Resizing(32, 32)(
        images.load_image(photo, min_side=32).astype("float32"))
    np.testing.assert_allclose(trained_on.numpy(), np.asarray(predicted_on), atol=1e-3)
    full = keras.layers.Resizing(32, 32)(images.load_image(photo).astype("float32"))
    assert np.abs(np.asarray(full) - trained_on.numpy()).max() > 1.0
    np.testing.assert_allclose(model.predict(trained_on[None], verbose=0)[0], from_keras,
                               atol=1e-4)


def test_threads_caps_tensorflow_for_a_keras_model(model_dir, pictures):
    """`--threads` is the runtime's, TensorFlow's too: a fresh process told 1 thread runs
    its pools with 1 (the LiteRT and ONNX backends are given it directly)."""
    from probes import printed_by

    code = ("import tensorflow as tf; from retrain.prediction.predictor import Predictor; "
            f"p = Predictor({str(model_dir)!r}, threads=1, runtime='tensorflow'); "
            f"p.predict({str(pictures['red'])!r}); "
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())")
    assert printed_by(code) == ["1", "1"]


def test_pictures_decoded_while_tensorflow_starts_answer_the_same_without_a_second_decode(
        model_dir, predictor, pictures, tmp_path, monkeypatch):
    """`kapps predict` on a model.keras decodes its pictures on the other cores while
    TensorFlow imports (`retrain.data.decode_ahead`); the predictor takes them."""
    import time

    from retrain.data import decode_ahead
    from retrain.prediction.predictor import side_for_tensorflow

    paths = [str(p) for p in pictures.values()]  # a JPEG, a PNG and a BMP
    plain = np.array(predictor.scores(paths))
    assert side_for_tensorflow(model_dir) == 32  # metrics.json's, read without TensorFlow
    decode_ahead.start(paths, 32)
    try:
        deadline = time.monotonic() + 30
        while len(decode_ahead._pixels) < len(paths) and time.monotonic() < deadline:
            time.sleep(0.02)
        decoded = []
        real = images._decode
        monkeypatch.setattr(images, "_decode", lambda path, *a, **k: decoded.append(path) or
                            real(path, *a, **k))
        ahead = np.array(predictor.scores(paths))
    finally:
        decode_ahead.stop()
    assert decoded == [] and not decode_ahead._pixels
    np.testing.assert_array_equal(ahead, plain)

    # Nothing is decoded ahead where TensorFlow will not run the model.
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("model.keras", "labels.txt", "metrics.json"):
        (kept / name).write_bytes((model_dir / name).read_bytes())
    assert side_for_tensorflow(kept, "onnx") is None
    (kept / ".runtime").mkdir()
    (kept / ".runtime" / "0123456789abcdef.tflite").write_bytes(b"kept")
    assert side_for_tensorflow(kept) is None  # `auto` runs the kept conversion
    assert side_for_tensorflow(kept, "tensorflow") == 32
    assert side_for_tensorflow(kept / "labels.txt") is None
