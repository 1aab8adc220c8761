"""The bottleneck cache on disk: shards of entries, shared by processes, never trusted blindly."""
import io
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
