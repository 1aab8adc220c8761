"""The bottleneck cache on disk: shards of entries, shared by processes, never trusted blindly."""
import numpy as np

from retrain.bottlenecks import BottleneckCache

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


def test_no_temporary_files_are_left_behind(tmp_path):
    BottleneckCache(tmp_path, BASE).put_many(["a_v0"], np.ones((1, 4)))
    names = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert not [n for n in names if n.startswith(".")]
    assert sum(n.endswith(".npz") for n in names) == 1
