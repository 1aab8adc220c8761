"""retrain end to end on tiny synthetic folders: export, cache, fine-tune modes, errors.

The "pretrained" base is LeNet-5 with weights saved to a file by the test itself:
small, offline, and real enough (a frozen base with a weights file) to exercise the
head-only path with its bottleneck cache.
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
from retrain import RetrainConfig, retrain
from retrain.cli.retrain import main as retrain_main
from retrain.config import resolve
from retrain.formats.graph import write_frozen_graph
from retrain.data.images import load_image
from retrain.train.fit import make_optimizer, train
from retrain.train.model import build_model, leaf_layers
from retrain.train.prepare import prepare_data


@pytest.fixture
def colours(tmp_path):
    """Three classes of solid colours, 14 pictures each."""
    return Path(imagegen.make_class_folder(tmp_path / "colours",
                                           {"red": 14, "green": 14, "blue": 14}))


def head_config(image_dir, tmp_path, base_weights, **overrides):
    settings = dict(image_dir=str(image_dir), architecture="lenet5", weights=base_weights,
                    image_size=32, epochs=8, learning_rate=0.02, train_batch_size=8,
                    testing_percentage=20, validation_percentage=20, verbose=0,
                    output_dir=str(tmp_path / "out"), bottleneck_dir=str(tmp_path / "cache"))
    settings.update(overrides)
    return RetrainConfig(**settings)


def test_head_training_exports_a_working_model(colours, tmp_path, base_weights):
    result = retrain(head_config(colours, tmp_path, base_weights,
                                 output_graph=str(tmp_path / "out" / "graph.pb")))
    out = tmp_path / "out"
    for name in ("model.keras", "labels.txt", "metrics.json", "history.png",
                 "confusion_matrix.png", "dataset_report.json", "split.json", "graph.pb"):
        assert (out / name).is_file(), name
    assert (out / "labels.txt").read_text("utf-8").splitlines() == ["blue", "green", "red"]
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    assert metrics["test_accuracy"] >= 0.9
    assert set(metrics["timings"]) == {"scan", "base", "bottlenecks", "model", "fit",
                                       "evaluate", "export"}
    assert all(seconds >= 0 for seconds in metrics["timings"].values())
    assert set(metrics["per_class"]) == {"blue", "green", "red"}
    assert {"precision", "recall", "f1-score"} <= set(metrics["per_class"]["red"])
    assert metrics["split_sizes"]["test"] > 0 and metrics["config"]["architecture"] == "lenet5"

    # The exported model takes raw pixels of any size and agrees with the in-memory one.
    loaded = keras.saving.load_model(out / "model.keras", safe_mode=True)
    paths = [r.path for r in result.prepared.records("test")]
    pixels = np.stack([load_image(p) for p in paths]).astype("float32")
    assert (loaded.predict(pixels, verbose=0).argmax(1) ==
            result.model.predict(pixels, verbose=0).argmax(1)).all()
    big = tf.image.resize(pixels[:1], [50, 70]).numpy()
    assert loaded.predict(big, verbose=0).argmax() == loaded.predict(pixels[:1], verbose=0).argmax()


def test_frozen_graph_runs_in_a_tf1_session(colours, tmp_path, base_weights):
    result = retrain(head_config(colours, tmp_path, base_weights, epochs=3))
    path = tmp_path / "graph.pb"
    write_frozen_graph(result.model, str(path))
    graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
    jpeg = imagegen.write_image(tmp_path / "probe.jpg", imagegen.CLASS_COLORS[0], size=40)
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            scores = sess.run("final_result:0",
                              {"DecodeJpeg/contents:0": open(jpeg, "rb").read()})
    assert scores.shape == (1, 3)
    assert scores.sum() == pytest.approx(1.0, abs=1e-5)
    expected = result.model.predict(load_image(jpeg)[None].astype("float32"), verbose=0)
    assert scores.argmax() == expected.argmax()


def test_bottlenecks_are_reused_and_invalidated_by_a_changed_picture(colours, tmp_path,
                                                                    base_weights):
    config = resolve(head_config(colours, tmp_path, base_weights))
    first = prepare_data(config, verbose=0)
    assert first.computed == 42
    assert prepare_data(config, verbose=0).computed == 0
    changed = sorted((colours / "red").iterdir())[0]
    imagegen.write_image(changed, (10, 10, 10), size=32)
    assert prepare_data(config, verbose=0).computed == 1


def test_pictures_with_cached_features_are_not_decoded_again(colours, tmp_path, base_weights,
                                                             monkeypatch):
    config = resolve(head_config(colours, tmp_path, base_weights))
    prepare_data(config, verbose=0)
    decoded = _count_decodes(monkeypatch)
    changed = sorted((colours / "green").iterdir())[0]
    imagegen.write_image(changed, (10, 200, 10), size=32)
    imagegen.write_truncated_jpeg(colours / "red" / "broken.jpg")
    second = prepare_data(config, verbose=0)
    # The bottleneck pass decodes the new bytes, which is their check; nothing else.
    assert sorted(decoded) == sorted(["broken.jpg", changed.name])
    assert second.computed == 1
    assert [rel for rel, _ in second.dataset.report.broken] == ["red/broken.jpg"]
    assert prepare_data(config, verbose=0).computed == 0


def _count_decodes(monkeypatch):
    from retrain.data import images

    decoded = []
    real = images._decode
    monkeypatch.setattr(images, "_decode",
                        lambda path, *a, **k: decoded.append(os.path.basename(path)) or
                        real(path, *a, **k))
    return decoded


def test_a_frozen_base_decodes_each_picture_once(colours, tmp_path, base_weights,
                                                 monkeypatch):
    """With an empty cache the scan only opens the pictures and the bottleneck pass's
    decode is their check; fine-tuning (no such pass) still decodes them in the scan."""
    decoded = _count_decodes(monkeypatch)
    prepared = prepare_data(resolve(head_config(colours, tmp_path, base_weights)), verbose=0)
    assert prepared.computed == 42
    assert sorted(decoded) == sorted(p.name for p in colours.glob("*/*"))

    decoded.clear()
    prepare_data(resolve(head_config(colours, tmp_path, base_weights, fine_tune="top:1",
                                     bottleneck_dir=str(tmp_path / "cache2"))), verbose=0)
    assert sorted(decoded) == sorted(p.name for p in colours.glob("*/*"))


def test_a_picture_broken_from_the_start_is_left_out_as_the_scan_would(
        colours, tmp_path, base_weights, capsys):
    """A truncated picture opens fine, so only the bottleneck pass finds it: one line
    names it, and the split, the counts and the classes are those of a full scan (a
    class whose every picture is broken is skipped; a copy of a broken file, decoded
    once for both, goes too)."""
    imagegen.write_truncated_jpeg(colours / "red" / "broken.jpg")
    imagegen.write_bytes(colours / "red" / "empty.png", b"")
    for i in range(3):
        imagegen.write_truncated_jpeg(colours / "grey" / f"{i}.jpg", keep=0.5 + 0.1 * i)
    config = resolve(head_config(colours, tmp_path, base_weights, verbose=1))
    prepared = prepare_data(config)
    from retrain.data.dataset import scan_image_folder
    full = scan_image_folder(colours, 20, 20)
    assert prepared.dataset.classes == full.classes == ["blue", "green", "red"]
    assert prepared.dataset.records == full.records
    assert prepared.dataset.report.to_dict() == full.report.to_dict()
    assert sorted(rel for rel, _ in full.report.broken) == [
        "grey/0.jpg", "grey/1.jpg", "grey/2.jpg", "red/broken.jpg", "red/empty.png"]
    for split in ("train", "validation", "test"):
        assert len(prepared.features[split]) == len(prepared.labels[split]) == \
            len(full.split(split))
    out, err = capsys.readouterr()
    warned = [line for line in err.splitlines() if line.startswith("warning: skipped broken")]
    assert len(warned) == 3 and any("grey/2.jpg" in line for line in warned)
    # Found by opening it, in the scan: the same words as the lines of the feature pass.
    assert f"warning: skipped broken file {colours / 'red' / 'empty.png'}: " in out
    assert "after leaving out 4 broken files: 3 classes, 42 pictures" in out
    assert "class folder 'grey' skipped: none of its 3 picture files can be read" in out


def test_distortions_cache_fixed_variants(colours, tmp_path, base_weights):
    config = resolve(head_config(colours, tmp_path, base_weights, flip_left_right=True,
                                 random_crop=10, distorted_variants=2))
    first = prepare_data(config, verbose=0)
    n_train = len(first.records("train"))
    assert first.features["train"].shape[:2] == (n_train, 3)  # plain + 2 distorted
    assert not np.allclose(first.features["train"][:, 0], first.features["train"][:, 1])
    again = prepare_data(config, verbose=0)
    assert again.computed == 0
    np.testing.assert_allclose(again.features["train"], first.features["train"])


def _backbone_weights(base):
    return {layer.name: [w.numpy().copy() for w in layer.weights]
            for layer in leaf_layers(base.backbone) if layer.weights}


@pytest.mark.parametrize("fine_tune, changed", [
    ("none", set()),
    ("top:1", {"conv2"}),   # the last layer with weights
    ("all", {"conv1", "conv2"}),
])
def test_fine_tune_modes_change_exactly_their_layers(colours, tmp_path, base_weights,
                                                     fine_tune, changed):
    config = resolve(head_config(colours, tmp_path, base_weights, fine_tune=fine_tune,
                                 epochs=1, learning_rate=0.01))
    prepared = prepare_data(config, verbose=0)
    model = build_model(prepared, config)
    before = _backbone_weights(prepared.base)
    train(model, prepared, config)
    after = _backbone_weights(prepared.base)
    moved = {name for name in before
             if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name]))}
    assert moved == changed


def test_fine_tuning_keeps_pretrained_batchnorm_frozen(tmp_path):
    from retrain.train.model import set_fine_tuning, _registry_base  # noqa: PLC2701

    weights = tmp_path / "mnv2.weights.h5"
    kapps.create_model("mobilenet_v2", include_top=False, weights=None,
                       input_shape=(32, 32, 3)).save_weights(weights)
    config = RetrainConfig(architecture="mobilenet_v2", weights=str(weights), image_size=32)
    base = _registry_base(config, "digest")
    trainable = set_fine_tuning(base, -1)
    assert trainable and not any(isinstance(l, keras.layers.BatchNormalization)
                                 for l in trainable)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in base.backbone.layers)


def test_batchnorm_trained_from_scratch_follows_the_data_quickly(tmp_path):
    """MobileNetV2's BatchNorm momentum of 0.999 suits ImageNet-length runs; trained from
    scratch on a small folder its moving statistics would barely move (a model at 99%
    training accuracy scored 20% on validation), so from scratch they follow at 0.9."""
    from retrain.train.model import SCRATCH_BN_MOMENTUM, set_fine_tuning, _registry_base  # noqa

    def momenta(weights, n_layers):
        config = RetrainConfig(architecture="mobilenet_v2", weights=weights, image_size=32)
        base = _registry_base(config, "digest")
        set_fine_tuning(base, n_layers)
        return {l.momentum for l in base.backbone.layers
                if isinstance(l, keras.layers.BatchNormalization)}

    assert momenta("none", -1) == {SCRATCH_BN_MOMENTUM}
    weights = tmp_path / "mnv2.weights.h5"
    kapps.create_model("mobilenet_v2", include_top=False, weights=None,
                       input_shape=(32, 32, 3)).save_weights(weights)
    assert momenta(str(weights), -1) == {0.999}  # pretrained: frozen, untouched


def test_ctrl_c_keeps_the_best_weights_so_far(colours, tmp_path, base_weights):
    config = resolve(head_config(colours, tmp_path, base_weights, epochs=6))
    prepared = prepare_data(config, verbose=0)
    model = build_model(prepared, config)

    class StopAtEpoch3(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    history = train(model, prepared, config, callbacks=[StopAtEpoch3()])
    assert history.interrupted
    assert len(history.history["loss"]) == 3  # stopped after 3 of 6 epochs
    val = history.history["val_accuracy"]
    assert val[history.best_epoch] == max(val)
    # The model now holds the best epoch's weights, not the last epoch's.
    scores = model.predict(prepared.features["validation"][:, 0], verbose=0)
    accuracy = np.mean(scores.argmax(1) == prepared.labels["validation"])
    assert accuracy == pytest.approx(max(val))


def test_learning_rate_warms_up_then_decays(tmp_path):
    config = RetrainConfig(learning_rate=0.1, epochs=10, warmup_epochs=1)
    schedule = make_optimizer(config, total_steps=100, epoch_steps=10)._learning_rate
    lr = [float(schedule(step)) for step in (0, 5, 10, 55, 99)]
    assert lr[0] == pytest.approx(0.0)
    assert lr[1] == pytest.approx(0.05, rel=1e-3)
    assert lr[2] == pytest.approx(0.1, rel=1e-3)
    assert lr[2] > lr[3] > lr[4] >= 0


def test_unicode_class_names_and_broken_files_survive(tmp_path, base_weights):
    root = Path(imagegen.make_class_folder(tmp_path / "pets", {"猫": 12, "狗": 12}))
    imagegen.write_truncated_jpeg(root / "猫" / "broken.jpg")
    imagegen.write_bytes(root / "狗" / "empty.png", b"")
    retrain(head_config(root, tmp_path, base_weights, epochs=2))
    assert (tmp_path / "out" / "labels.txt").read_text("utf-8").splitlines() == ["狗", "猫"]
    report = json.loads((tmp_path / "out" / "dataset_report.json").read_text("utf-8"))
    broken = json.dumps(report["broken"], ensure_ascii=False)
    assert "broken.jpg" in broken and "empty.png" in broken


def test_a_broken_picture_is_decoded_once_and_reported_every_run(colours, tmp_path,
                                                                 base_weights, monkeypatch,
                                                                 capsys):
    from retrain.data import images

    imagegen.write_truncated_jpeg(colours / "red" / "truncated.jpg")
    decoded = []
    real = images._decode

    def counting(path, *args, **kwargs):
        decoded.append(os.path.basename(os.fspath(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images, "_decode", counting)
    line = f"warning: skipped broken file {colours / 'red' / 'truncated.jpg'}: "
    for run in (1, 2):
        del decoded[:]
        prepared = prepare_data(resolve(head_config(colours, tmp_path, base_weights)),
                                verbose=0)
        assert decoded.count("truncated.jpg") == (1 if run == 1 else 0)
        assert len(prepared.dataset.records) == 42
        assert [rel for rel, _ in prepared.dataset.report.broken] == ["red/truncated.jpg"]
        assert capsys.readouterr().err.count(line) == 1  # said once, in one style, each run


def test_early_stopping_says_when_it_stopped_and_which_epoch_it_kept(tmp_path):
    from retrain.job import summary_lines

    metrics = {"epochs_run": 7, "best_epoch": 4, "interrupted": False, "test_accuracy": None,
               "head_fit": {"method": "keras"},
               "history": {"val_accuracy": [0.5, 0.6, 0.7, 0.8, 0.7, 0.8, 0.75]}}
    config = RetrainConfig(epochs=20, early_stopping=3, output_dir=str(tmp_path))
    assert summary_lines(config, metrics, 0, 0)[0] == (
        "Stopped early at epoch 7 of 20: no better validation accuracy for 3 epochs "
        "(--early_stopping 3); restored epoch 4, the best (accuracy 80.00%).")
    config = RetrainConfig(epochs=7, early_stopping=3, output_dir=str(tmp_path))
    assert summary_lines(config, metrics, 0, 0)[0] == \
        "Kept epoch 4 of 7, the best on validation (accuracy 80.00%)."  # ran every epoch


def test_retraining_keeps_the_previous_export(colours, tmp_path, base_weights, capsys):
    config = head_config(colours, tmp_path, base_weights, epochs=1, verbose=2)
    retrain(config)
    first = (tmp_path / "out" / "model.keras").read_bytes()
    kept = tmp_path / "out" / ".runtime" / "0123456789abcdef.tflite"  # a kept conversion
    kept.parent.mkdir()
    kept.write_bytes(b"the first model, converted")
    capsys.readouterr()
    retrain(config)
    [folder] = (tmp_path / "out" / "previous").iterdir()
    assert (folder / "model.keras").read_bytes() == first
    said = capsys.readouterr().out
    assert f"The earlier model in {tmp_path / 'out'} was moved to {folder}/" in said
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
    assert f"keeps every earlier one: 1 model, {size:.1f} MB; delete those" in said
    # The conversion goes with the model it was made from, never beside the new one.
    assert not (tmp_path / "out" / ".runtime").exists()
    assert (folder / ".runtime" / kept.name).read_bytes() == b"the first model, converted"


def fake_export(folder, text):
    """An export folder as kapps writes one, its files holding `text`."""
    os.makedirs(folder / "saved_model", exist_ok=True)
    for name in ("model.keras", "labels.txt", "model.tflite", "saved_model/saved_model.pb"):
        (folder / name).write_text(text)


def test_every_earlier_model_is_kept_in_a_folder_of_its_own(tmp_path):
    """Three runs into one folder: the first two models are both kept, each whole."""
    from retrain.export.folder import keep_previous_export

    out = tmp_path / "pets"
    assert keep_previous_export(out) is None  # nothing to keep yet
    kept = []
    for run in ("first", "second", "third"):
        fake_export(out, run)
        os.utime(out / "model.keras", (0, 0))  # all made in one second: names still differ
        kept.append(keep_previous_export(out))
        assert not (out / "model.keras").exists() and not (out / "saved_model").exists()
    assert len(set(kept)) == 3 and all(Path(k).parent == out / "previous" for k in kept)
    for folder, run in zip(kept, ("first", "second", "third")):
        for name in ("model.keras", "labels.txt", "model.tflite", "saved_model/saved_model.pb"):
            assert (Path(folder) / name).read_text() == run


def test_a_model_kept_before_timed_folders_moves_into_one(tmp_path):
    """kapps once kept one earlier model straight in previous/: it is not mixed or lost."""
    from retrain.export.folder import keep_previous_export

    out = tmp_path / "pets"
    fake_export(out / "previous", "oldest")
    fake_export(out, "newer")
    keep_previous_export(out)
    folders = sorted((out / "previous").iterdir())
    assert [sorted(p.name for p in f.iterdir()) for f in folders] == \
        [["labels.txt", "model.keras", "model.tflite", "saved_model"]] * 2
    assert sorted((f / "model.keras").read_text() for f in folders) == ["newer", "oldest"]


def test_transfer_from_a_saved_classifier(colours, tmp_path, base_weights):
    """The layers of an exported classifier up to its classifier become the new base."""
    retrain(head_config(colours, tmp_path, base_weights, epochs=2))
    source = str(tmp_path / "out" / "model.keras")
    more = imagegen.make_class_folder(tmp_path / "more", {"a": 10, "b": 10, "c": 10, "d": 10})
    result = retrain(head_config(more, tmp_path, source, output_dir=str(tmp_path / "out2"),
                                 architecture="mobilenet_v2", image_size=None, epochs=2))
    assert result.model.output_shape == (None, 4)
    assert result.prepared.base.image_size == 32  # taken from the source model


def test_transfer_cut_at_a_layer_inside_the_saved_architecture(colours, tmp_path,
                                                             base_weights):
    """`base_layer` ends the base at a layer of the nested architecture of an export (the
    `mnist_transfer_cnn` way: early convolutions transfer to unlike classes)."""
    retrain(head_config(colours, tmp_path, base_weights, epochs=1))
    source = str(tmp_path / "out" / "model.keras")
    more = imagegen.make_class_folder(tmp_path / "more", {"a": 10, "b": 10, "c": 10, "d": 10})
    result = retrain(head_config(more, tmp_path, source, output_dir=str(tmp_path / "out2"),
                                 base_layer="pool1", epochs=1))
    pictures = np.random.default_rng(0).uniform(0, 255, (2, 40, 50, 3)).astype("float32")
    saved = keras.saving.load_model(source, compile=False)
    lenet = saved.get_layer("lenet5")
    pool1 = keras.Model(lenet.inputs, lenet.get_layer("pool1").output)
    preprocessed = keras.Model(saved.inputs[0], saved.get_layer("preprocess").output)(pictures)
    expected = np.asarray(pool1(preprocessed)).reshape(2, -1)   # 16 x 16 x 6 at 32 px
    features = np.asarray(result.prepared.base.extractor(pictures))
    assert features.shape == (2, 16 * 16 * 6)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    assert result.prepared.base.key["base_layer"] == "pool1"  # its own bottleneck cache
    assert result.model.predict(pictures, verbose=0).shape == (2, 4)


def test_architecture_cut_at_a_named_layer(colours, tmp_path, base_weights):
    config = resolve(head_config(colours, tmp_path, base_weights, base_layer="conv2"))
    base = prepare_data(config, verbose=0).base
    assert base.feature_dim == 12 * 12 * 16  # LeNet-5's conv2 at 32 px, flattened
    assert base.backbone.layers[-1].name == "conv2"


def test_cut_inside_a_branching_model_is_refused_in_one_line():
    from kapps.errors import UserError
    from retrain.train.model import _cut  # noqa: PLC2701

    pixels = keras.Input((8, 8, 3))
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1, name="c")],
                             name="inner")
    x = keras.layers.Add()([inner(pixels), pixels])  # the model is not a chain
    model = keras.Model(pixels, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(UserError, match="pass a layer of the outer model"):
        _cut(model, "c")
    assert _cut(model, "inner").output_shape == (None, 8, 8, 3)  # an outer layer is fine
    assert _cut(model, "nothing") is None


@pytest.mark.parametrize("argv, message", [
    (["--image_dir", "no/such/folder"], "no/such/folder"),
    (["--image_dir", "{one}", "--weights", "none", "--fine_tune", "all"], "at least two"),
    (["--image_dir", "{colours}", "--architecture", "resnet9000"], "Valid names"),
    (["--image_dir", "{colours}", "--fine_tune", "some"], "--fine_tune"),
    (["--image_dir", "{colours}", "--weights", "none", "--fine_tune", "top:2"],
     "leave --fine_tune out"),
    (["--image_dir", "{colours}", "--weights", "{weights}", "--architecture", "mobilenet_v2",
      "--image_size", "32"], "does not fit --architecture mobilenet_v2 at 32 px"),
    (["--image_dir", "{colours}", "--weights", "{weights}", "--architecture", "lenet5",
      "--image_size", "32", "--base_layer", "conv9"], "`kapps summary lenet5`"),
])
def test_cli_errors_are_one_line(tmp_path, colours, base_weights, capsys, argv, message):
    one = imagegen.make_class_folder(tmp_path / "one", {"only": 3})
    argv = [a.format(one=one, colours=colours, weights=base_weights) for a in argv]
    assert retrain_main(argv + ["--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert "Traceback" not in err


def test_an_architecture_without_imagenet_weights_trains_from_scratch_by_itself(
        colours, tmp_path, capsys):
    code = retrain_main(["--image_dir", str(colours), "--architecture", "small_cnn",
                         "--image_size", "8", "--epochs", "1", "--verbose", "2",
                         "--output_dir", str(tmp_path / "out"),
                         "--bottleneck_dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0
    [line] = [line for line in out.splitlines() if line.startswith("Weights:")]
    assert line == ("Weights: small_cnn has no ImageNet weights, so it trains from scratch "
                    "(as --weights none --fine_tune all, learning rate 0.001).")
    config = json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]
    assert (config["weights"], config["fine_tune"]) == ("none", "all")


def test_weights_none_alone_trains_every_layer(colours):
    config = resolve(RetrainConfig(image_dir=str(colours), architecture="lenet5",
                                   weights="none"))
    assert (config.weights, config.fine_tune_layers()) == ("none", -1)


def test_demo_runs_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAPPS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "digits_model"
    assert retrain_main(["--demo", "--epochs", "2", "--output_dir", str(out),
                         "--verbose", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["architecture"] == "small_cnn"
    assert metrics["config"]["image_size"] == 16
    assert sum(metrics["split_sizes"].values()) == 1797
    assert metrics["test_accuracy"] > 0.5  # two epochs from scratch on real digits
    assert "Test accuracy " in capsys.readouterr().out


DISTRIBUTED_RUN = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from retrain import retrain
for fine_tune, weights in (("none", sys.argv[2]), ("all", "none")):
    result = retrain(image_dir=sys.argv[1], architecture="lenet5", weights=weights,
                     fine_tune=fine_tune, image_size=32, epochs=2, distribute=True, verbose=0,
                     head_fit="keras",
                     output_dir=sys.argv[3], bottleneck_dir=sys.argv[4],
                     testing_percentage=20, validation_percentage=20)
    print(fine_tune, result.metrics["split_sizes"]["validation"], result.metrics["epochs_run"])
"""


def test_distribute_trains_on_two_replicas_with_an_uneven_validation_split(tmp_path,
                                                                        base_weights):
    import subprocess
    import sys

    root = imagegen.make_class_folder(tmp_path / "odd", {"a": 13, "b": 11, "c": 9})
    done = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_RUN, str(root), base_weights, str(tmp_path / "out"),
         str(tmp_path / "cache")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [line[0] for line in lines] == ["none", "all"]
    assert all(int(line[1]) % 2 == 1 and line[2] == "2" for line in lines)  # odd split, 2 epochs


def test_old_retrain_py_flags_keep_their_meaning(colours, tmp_path, base_weights, capsys):
    labels = tmp_path / "elsewhere" / "output_labels.txt"
    argv = ["--image_dir", str(colours), "--architecture", "lenet5", "--weights", base_weights,
            "--image_size", "32", "--how_many_training_steps", "9", "--train_batch_size", "8",
            "--testing_percentage", "20", "--validation_percentage", "20",
            "--output_labels", str(labels), "--print_misclassified_test_images",
            "--output_dir", str(tmp_path / "out"), "--bottleneck_dir", str(tmp_path / "cache"),
            "--verbose", "2"]
    assert retrain_main(argv) == 0
    assert labels.read_text("utf-8").splitlines() == ["blue", "green", "red"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text("utf-8"))
    steps_per_epoch = -(-metrics["split_sizes"]["train"] // 8)
    assert metrics["epochs_run"] == -(-9 // steps_per_epoch)  # 9 batches, in whole epochs
    ended = metrics["epoch_ended_at"]  # when each epoch ended, for time-to-best reports
    assert len(ended) == metrics["epochs_run"] and ended == sorted(ended)
    assert metrics["started_at"] < ended[0] <= metrics["started_at"] + metrics["train_seconds"]
    assert "=== MISCLASSIFIED TEST IMAGES ===" in capsys.readouterr().out


def test_a_logged_run_reads_plainly_and_says_what_it_kept(colours, tmp_path, base_weights,
                                                          capsys):
    """Output to a file or pipe (pytest's capture is not a terminal): one plain line per
    epoch, no bar redraws; the end names the kept epoch (1-based, as in metrics.json) and
    the files; TensorBoard logs with --summaries_dir; --assert_accuracy_at_least passes."""
    argv = ["--image_dir", str(colours), "--architecture", "lenet5", "--weights", base_weights,
            "--image_size", "32", "--head_fit", "keras", "--epochs", "4",
            "--train_batch_size", "8",
            "--testing_percentage", "20", "--validation_percentage", "20",
            "--bottleneck_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out"),
            "--summaries_dir", str(tmp_path / "logs"), "--assert_accuracy_at_least", "0"]
    assert retrain_main(argv) == 0
    out = capsys.readouterr().out
    assert not {"\r", "\b", "\x1b"} & set(out), repr(out[:300])
    assert out.count("Epoch ") == 4
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text("utf-8"))
    val = metrics["history"]["val_accuracy"]
    best = metrics["best_epoch"]
    assert 1 <= best <= 4 and val[best - 1] == max(val)
    assert f"Kept epoch {best} of 4, the best on validation" in out
    assert "history.png, confusion_matrix.png" in out and "model.keras" in out
    # Three classes: top-3 accuracy would always be 1, so it is not reported.
    assert "top-3" not in out and "test_top3_accuracy" not in metrics
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_assert_accuracy_at_least_fails_with_one_line(colours, tmp_path, base_weights, capsys):
    argv = ["--image_dir", str(colours), "--architecture", "lenet5", "--weights", base_weights,
            "--image_size", "32", "--epochs", "1", "--testing_percentage", "0",
            "--bottleneck_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out"),
            "--assert_accuracy_at_least", "0.5"]
    assert retrain_main(argv) == 1
    captured = capsys.readouterr()
    assert "No test accuracy: the test split is empty" in captured.out
    err = captured.err.strip()
    assert err.startswith("error: there are no test pictures, below "
                          "--assert_accuracy_at_least 0.5") and "\n" not in err
    assert (tmp_path / "out" / "model.keras").is_file()


def test_progress_bars_count_only_the_batches_an_epoch_has():
    """Head training runs 64 batches per call: a 102-batch epoch's second call must show
    102/102, not 128/102 (Keras' own logger, the negative twin, shows 128)."""
    from retrain.train.fit import CountedProgbarLogger

    for logger, shown in ((CountedProgbarLogger(), 102), (keras.callbacks.ProgbarLogger(), 128)):
        logger.set_params({"verbose": 0, "epochs": 1, "steps": 102})
        logger.on_epoch_begin(0)
        logger.on_train_batch_end(127, {})
        assert logger.seen == shown


def test_verbosity_follows_where_the_output_goes(monkeypatch, colours):
    """Bars on a terminal, one line per epoch in a log; an explicit --verbose wins."""
    import sys

    config = RetrainConfig(image_dir=str(colours), architecture="lenet5", weights="none",
                           fine_tune="all")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert resolve(config).verbose == 2
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert resolve(config).verbose == 1
    assert resolve(RetrainConfig(**dict(config.to_dict(), verbose=2))).verbose == 2


def test_a_short_head_fit_runs_one_batch_per_call_and_a_long_one_several():
    """Several batches per call trace a loop that costs more than it saves on short fits."""
    from retrain.train.fit import head_steps_per_execution

    assert head_steps_per_execution(45, 3) == 1     # a tuning trial on the digits
    assert head_steps_per_execution(2, 10) == 1     # 72 pictures
    assert head_steps_per_execution(45, 10) == 45   # the digits, 10 epochs
    assert head_steps_per_execution(125, 10) == 64  # 5,000 pictures
    assert head_steps_per_execution(20, 50) == 20


def _decoded_ahead(count, timeout=60):
    """Wait until `count` pictures were decoded ahead."""
    import time

    from retrain.data import decode_ahead

    deadline = time.monotonic() + timeout
    while len(decode_ahead._pixels) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(decode_ahead._pixels)


def test_pictures_decoded_while_tensorflow_starts_are_not_decoded_again(
        colours, tmp_path, base_weights, monkeypatch):
    """`kapps retrain` decodes the pictures ahead during TensorFlow's import: the feature
    pass takes them (no second decode) and the features are those of a plain run."""
    from retrain.data import decode_ahead
    from retrain.cli.retrain import start_decoding_ahead

    plain = prepare_data(resolve(head_config(colours, tmp_path, base_weights)), verbose=0)
    config = resolve(head_config(colours, tmp_path, base_weights,
                                 bottleneck_dir=str(tmp_path / "cache2")))
    changed = sorted((colours / "blue").iterdir())[0]
    start_decoding_ahead(config)
    try:
        assert _decoded_ahead(42) == 42
        imagegen.write_image(changed, (0, 0, 250), size=40)  # changed since: decoded again
        decoded = _count_decodes(monkeypatch)
        ahead = prepare_data(config, verbose=0)
    finally:
        decode_ahead.stop()
    assert decoded == [changed.name]
    assert not decode_ahead._pixels
    for split in ("train", "validation", "test"):
        rows = [r.path != str(changed) for r in ahead.records(split)]
        np.testing.assert_array_equal(ahead.features[split][rows], plain.features[split][rows])


def test_decoding_ahead_starts_only_where_a_feature_pass_follows(colours, tmp_path,
                                                                 base_weights):
    from retrain.data import decode_ahead
    from retrain.cli.retrain import start_decoding_ahead

    for overrides in ({"fine_tune": "all"}, {"weights": str(tmp_path / "old.keras")}):
        config = RetrainConfig(**{**head_config(colours, tmp_path, base_weights).__dict__,
                                  **overrides})
        start_decoding_ahead(config)
        assert decode_ahead._state["stop"] is None, overrides


def test_a_head_retrain_from_the_command_line_prints_nothing_from_tensorflow(
        colours, tmp_path, base_weights):
    """Evaluating the head called `model.predict` on the features, whose tf.data pipeline
    made TensorFlow print a `NodeDef mentions attribute ...` error line to the user."""
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-m", "retrain", "--image_dir", str(colours), "--architecture",
         "lenet5", "--weights", base_weights, "--image_size", "32", "--epochs", "2",
         "--output_dir", str(tmp_path / "out"), "--bottleneck_dir", str(tmp_path / "cache"),
         "--verbose", "0"], capture_output=True, text=True, timeout=300, cwd=repo,
        env={**os.environ, "PYTHONPATH": repo})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    assert (tmp_path / "out" / "model.keras").is_file()


def test_a_split_with_no_training_picture_is_one_line(tmp_path, base_weights):
    """Two pictures a class and 49% + 50% held out: every picture lands in validation or
    test. Both head fits say so in one line instead of failing inside the solver."""
    from kapps.errors import UserError

    folder = Path(imagegen.make_class_folder(tmp_path / "few", {"red": 2, "green": 2}))
    for head_fit in ("lbfgs", "keras"):
        config = head_config(folder, tmp_path, base_weights, testing_percentage=49,
                             validation_percentage=50, head_fit=head_fit,
                             learning_rate=None if head_fit == "lbfgs" else 0.02)
        with pytest.raises(UserError, match="no training pictures.*--testing_percentage"):
            retrain(config)


def test_only_failures_the_bytes_decide_are_remembered(tmp_path):
    """A truncated file stays truncated; a read error on a network drive may not happen
    again, so that picture is decoded again on the next run."""
    import json

    from retrain.train.prepare import BROKEN_FILE, read_broken, remember_broken

    remember_broken(str(tmp_path), {}, {
        "aa": "the file is truncated or damaged (image file is truncated)",
        "bb": "not a JPEG, PNG, GIF, BMP or WebP picture (the content is another format)",
        "cc": "[Errno 5] Input/output error", "dd": "cannot open the file (Stale file handle)"})
    assert sorted(read_broken(str(tmp_path))) == ["aa", "bb"]
    assert sorted(json.loads((tmp_path / BROKEN_FILE).read_text())) == ["aa", "bb"]
