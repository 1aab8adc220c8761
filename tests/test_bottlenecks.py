"""The bottleneck cache on disk: shards of entries, shared by processes, never trusted blindly."""
import io
import os
import pathlib

import numpy as np
import pytest

from retrain.train.bottlenecks import BottleneckCache
from torchfiles import set_zip_flag

BASE = {"architecture": "lenet5", "weights": "abc", "image_size": 32}


def test_entries_written_by_one_cache_are_read_by_another(tmp_path):
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    BottleneckCache(tmp_path, BASE).put_many(["a_v0", "b_v0", "c_v0"], vectors)
    found = BottleneckCache(tmp_path, BASE).get_many(["b_v0", "c_v0", "missing_v0"])
    assert sorted(found) == ["b_v0", "c_v0"]
    np.testing.assert_array_equal(found["c_v0"], vectors[2])


def test_another_base_has_its_own_entries(tmp_path):
    BottleneckCache(tmp_path, BASE).put_many(["a_v0"], np.ones((1, 4)))
    other = BottleneckCache(tmp_path, dict(BASE, image_size=64))
    assert other.get_many(["a_v0"]) == {}


def test_a_damaged_shard_is_skipped_and_the_rest_still_read(tmp_path):
    cache = BottleneckCache(tmp_path, BASE)
    cache.put_many(["a_v0"], np.ones((1, 4)))
    cache.put_many(["b_v0"], np.zeros((1, 4)))
    shards = sorted(p for p in (tmp_path).rglob("*.npz"))
    assert len(shards) == 2
    shards[0].write_bytes(b"not a shard")
    found = BottleneckCache(tmp_path, BASE).get_many(["a_v0", "b_v0"])
    assert len(found) == 1


def scalar_keys():
    """A shard whose `keys` is one string, not a list of them."""
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.array("a_v0"), vectors=np.ones((1, 4), np.float32))
    return buffer.getvalue()


# Ways a shard gets damaged, named by what reading it raises (the first two escaped).
DAMAGES = {
    "NotImplementedError": lambda data: set_zip_flag(data, 6),  # "strong encryption"
    "RuntimeError": lambda data: set_zip_flag(data, 0),  # "encrypted, password required"
    "BadZipFile": lambda data: data[:len(data) // 2],
    "TypeError (keys not a list)": lambda data: scalar_keys(),
}


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_shard_that_cannot_be_read_for_any_reason_is_skipped_and_said_once(tmp_path, capsys,
                                                                            how):
    cache = BottleneckCache(tmp_path, BASE)
    for key in ("a_v0", "b_v0", "c_v0"):
        cache.put_many([key], np.full((1, 4), ord(key[0]), np.float32))
    for key in ("a_v0", "c_v0"):
        shard = pathlib.Path(cache.index()[key][0])
        shard.write_bytes(DAMAGES[how](shard.read_bytes()))
    found = BottleneckCache(tmp_path, BASE).get_many(["a_v0", "b_v0", "c_v0"])
    assert list(found) == ["b_v0"] and found["b_v0"][0] == ord("b")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Skipping bottleneck shards that cannot be "
                                                    "read, first ")
    assert ".npz" in err and "computed again" in err


def test_no_temporary_files_are_left_behind(tmp_path):
    BottleneckCache(tmp_path, BASE).put_many(["a_v0"], np.ones((1, 4)))
    names = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert not [n for n in names if n.startswith(".")]
    assert sum(n.endswith(".npz") for n in names) == 1


# Runs `kapps retrain` with the feature pass in chunks of 32 pictures (one batch) that
# sleeps after each chunk: the first shard is on disk while the pass sleeps, and the
# test kills it there. A chunk of one batch keeps the batches those of a plain run.
SLOW_PASS = """
import sys, time
from retrain.train import bottlenecks
compute = bottlenecks._compute
def slow(*args, **kwargs):
    for done in compute(*args, **dict(kwargs, chunk=32)):
        yield done
        time.sleep(60)
bottlenecks._compute = slow
from kapps.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _retrain(tmp_path, weights, cache, out, code=None):
    """A `kapps retrain` in a subprocess, of 40 32-px pictures (written once) on the
    LeNet-5 base `weights`; `code` runs it through `python -c code`, not `-m kapps.cli`."""
    import subprocess
    import sys

    import imagegen

    pictures = tmp_path / "pictures"
    if not pictures.exists():
        imagegen.make_class_folder(pictures, {"red": 20, "blue": 20})
    command = [sys.executable] + (["-c", code] if code else ["-m", "kapps.cli"]) + [
        "retrain", "--image_dir", str(pictures), "--architecture", "lenet5", "--weights",
        str(weights), "--image_size", "32", "--bottleneck_dir", str(tmp_path / cache),
        "--output_dir", str(tmp_path / out), "--seed", "3", "--verbose", "2"]
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    if code:
        return subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _head(folder):
    import keras

    model = keras.saving.load_model(folder / "model.keras")
    return [w for layer in model.layers for w in layer.get_weights()]


def test_a_retrain_killed_in_the_feature_pass_computes_only_what_is_missing(tmp_path,
                                                                           base_weights):
    """kill -9 after the first shard of the feature pass, then the same command: the
    features found are said and not computed again, and the model is the one an
    uninterrupted run with the same --seed makes."""
    import signal
    import time

    killed = _retrain(tmp_path, base_weights, "cache", "killed", code=SLOW_PASS)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "cache").rglob("*.npz")):
            assert killed.poll() is None, killed.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no shard written in 120 s"
            time.sleep(0.1)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
    assert not (tmp_path / "killed" / "model.keras").exists()
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1

    resumed = _retrain(tmp_path, base_weights, "cache", "resumed")
    assert "Computing 8 bottlenecks (32 of 40 were cached)" in resumed
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 2  # the missing 8, once

    plain = _retrain(tmp_path, base_weights, "fresh_cache", "plain")
    assert "Computing 40 bottlenecks (0 of 40 were cached)" in plain
    for resumed_w, plain_w in zip(_head(tmp_path / "resumed"), _head(tmp_path / "plain")):
        np.testing.assert_array_equal(resumed_w, plain_w)
