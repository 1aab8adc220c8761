"""The same command with the same `--seed` on the same machine gives the same run.

Each kind of run (a head on cached features with distortions, `top:N` fine-tuning,
training from scratch, the default L-BFGS head, a search) is run twice, each time in a fresh process with its
own caches, and the two `metrics.json` (timing fields aside), the weights and the
search's trials must be identical, not merely close.
"""
import json
import subprocess
import sys

import imagegen
import keras
import numpy as np
import pytest

import kapps
import kapps.preprocessing  # noqa: F401  (registers `Preprocess`, which the models hold)

# Fields that say when something happened or how long it took: they may differ.
TIMING = {"started_at", "epoch_ended_at", "train_seconds", "seconds", "timings"}

RUNS = """
import sys
from retrain import retrain
import tuning
image_dir, weights = sys.argv[1:3]
common = dict(image_dir=image_dir, architecture="lenet5", image_size=24, epochs=3,
              train_batch_size=8, testing_percentage=20, validation_percentage=20,
              learning_rate=0.01, verbose=0, bottleneck_dir="cache")
retrain(weights=weights, output_dir="head", flip_left_right=True, random_crop=10,
        distorted_variants=2, dropout=0.5, **common)
retrain(weights=weights, output_dir="top", fine_tune="top:1", random_brightness=20,
        **common)
retrain(weights=weights, output_dir="linear", head_fit="lbfgs", **common)
retrain(weights="none", fine_tune="all", output_dir="scratch", random_scale=10, **common)
tuning.search(image_dir, "random", {"learning_rate": [0.003, 0.01, 0.03], "dropout": [0.0, 0.5]},
              max_trials=3, directory="search", project_name="p", trials_per_process=0,
              weights=weights, flip_left_right=True, distorted_variants=2,
              **dict(common, epochs=2))
"""
KINDS = ("head", "top", "scratch", "linear")  # linear: the L-BFGS head fit, one "epoch"


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    image_dir = imagegen.make_class_folder(root / "pictures", {"a": 8, "b": 8, "c": 8}, size=24,
                                           noise=40)
    weights = str(root / "lenet5.weights.h5")
    keras.utils.set_random_seed(1)
    kapps.create_model("lenet5", include_top=False, input_shape=(24, 24, 3)).save_weights(weights)
    outs = [root / "first", root / "second"]
    runs = []
    for out in outs:  # side by side: each process is seeded alone, so they need not wait
        out.mkdir()  # the same relative paths in both, so the configs are the same too
        runs.append(subprocess.Popen([sys.executable, "-c", RUNS, image_dir, weights],
                                     cwd=out, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True))
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-3000:]
    return outs


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_gives_the_same_metrics_and_weights(two_runs, kind):
    first, second = (json.loads((out / kind / "metrics.json").read_text("utf-8"))
                     for out in two_runs)
    assert len(first["history"]["loss"]) == (1 if kind == "linear" else 3)
    assert _without_timing(first) == _without_timing(second)
    models = [keras.saving.load_model(out / kind / "model.keras", compile=False)
              for out in two_runs]
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_array_equal(a, b)


def test_the_same_seed_gives_the_same_search(two_runs):
    first, second = (json.loads((out / "search" / "p" / "trials.json").read_text("utf-8"))
                     for out in two_runs)
    assert len(first["trials"]) == 3
    assert _without_timing(first) == _without_timing(second)


def test_fine_tuning_batches_depend_on_the_seed_and_the_pass_only(tmp_path, monkeypatch):
    """Each pass's order and distortions come from (seed, pass): another iterator, one that
    read ahead and was dropped (as Keras' build under a strategy does), decoding each pass
    again instead of keeping the pictures, or a start at a later pass changes no batch."""
    from types import SimpleNamespace

    from retrain.config import RetrainConfig
    from retrain.train import fit, image_batches

    folder = imagegen.make_class_folder(tmp_path, {"a": 5, "b": 4}, size=24)
    records = [SimpleNamespace(path=str(path), class_index=i)
               for i, name in enumerate("ab") for path in sorted((tmp_path / name).iterdir())]
    assert len(records) == 9 and folder
    config = RetrainConfig(seed=3, random_crop=10, flip_left_right=True)

    def batches(first_pass=0, count=9, ds=None):  # 3 batches a pass (9 pictures, 4 a batch)
        ds = ds or fit.training_batches(records, 2, 24, config, 4, 3, first_pass=first_pass)
        return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]

    def same(a, b):
        return len(a) == len(b) and all(np.array_equal(x, u) and np.array_equal(y, v)
                                        for (x, y), (u, v) in zip(a, b))

    first = batches()
    ds = fit.training_batches(records, 2, 24, config, 4, 3)
    ahead = iter(ds)
    for _ in range(5):
        next(ahead)
    del ahead
    assert same(batches(ds=ds), first)
    assert same(batches(first_pass=1, count=6), first[3:])
    assert not same(first[:3], first[3:6])  # a new order and distortions each pass
    monkeypatch.setattr(image_batches, "_cacheable", lambda n, size: False)
    assert same(batches(), first)


def test_the_workers_of_a_cluster_read_their_rows_of_the_batches_one_worker_reads(tmp_path):
    """Fine-tuning on two workers: each decodes only its half of every batch, and the
    halves, step by step, are the batches (and distortions) of one worker, the class
    weights riding along as sample weights."""
    from types import SimpleNamespace

    from retrain.config import RetrainConfig
    from retrain.train import image_batches

    imagegen.make_class_folder(tmp_path, {"a": 5, "b": 4}, size=24)
    records = [SimpleNamespace(path=str(path), class_index=i)
               for i, name in enumerate("ab") for path in sorted((tmp_path / name).iterdir())]
    config = RetrainConfig(seed=3, random_crop=10, flip_left_right=True)
    assert image_batches.worker_rows(2, 4, 1, 2).tolist() == [2, 3, 6, 7]
    whole = [(x.numpy(), y.numpy()) for x, y in image_batches.training_batches(
        records, 2, 24, config, 4, 3, distribute=True)]
    assert len(whole) == 6  # two whole batches of 4 a pass, the ninth picture left out
    weights = [0.9, 0.9, 0.9, 0.9, 0.9, 1.1, 1.1, 1.1, 1.1]
    halves = [list(image_batches.worker_training_batches(
        records, 2, 24, config, 4, 3, worker, 2, 2, weights)) for worker in (0, 1)]
    assert [len(h) for h in halves] == [6, 6]
    for (x, y), first, second in zip(whole, *halves):
        assert np.array_equal(np.concatenate([first[0], second[0]]), x)
        assert np.array_equal(np.concatenate([first[1], second[1]]), y)
        expected = np.where(y[:, 0] == 1, 0.9, 1.1)
        assert np.allclose(np.concatenate([first[2], second[2]]), expected)


def test_head_batches_on_features_depend_on_the_seed_and_the_epoch_only():
    """A Keras head's epochs on cached features: epoch e's order and variants come from
    (seed, e), so another iterator, one read ahead and dropped, or a run resumed at
    epoch 1 (`--backup_dir`) sees the batches of one uninterrupted run."""
    import tensorflow as tf

    from retrain.train.fit import feature_batches

    features = tf.constant(np.arange(7 * 3 * 2, dtype=np.float32).reshape(7, 3, 2))
    onehot = tf.constant(np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1, 1]])

    def batches(first_epoch=0, seed=5, ds=None):  # 3 epochs of 2 whole batches of 3
        ds = ds or feature_batches(features, onehot, 3, True, seed, True, 3, first_epoch)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    first = batches()
    assert len(first) == 6 and all(len(x) == 3 for x, _ in first)
    ds = feature_batches(features, onehot, 3, True, 5, True, 3)
    ahead = iter(ds)
    next(ahead)
    del ahead
    same = lambda a, b: len(a) == len(b) and all(  # noqa: E731
        np.array_equal(x, u) and np.array_equal(y, v) for (x, y), (u, v) in zip(a, b))
    assert same(batches(ds=ds), first)
    assert same(batches(first_epoch=1), first[2:])
    assert not same(first[:2], first[2:4])  # each epoch its own order and variants
    assert not same(batches(seed=6), first)
    rows = np.concatenate([x for x, _ in first[:2]])
    assert len({int(r[0]) // 6 for r in rows}) == 6  # six pictures, none twice an epoch
