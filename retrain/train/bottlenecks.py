"""The bottleneck cache: features of the frozen base, computed once per picture.

Head training, a second run, another head and every tuning trial read features
from here instead of running the base over the pictures again. An entry is keyed
by what determines it: the base (architecture, weights file, input size, pooling)
names a sub-folder, the picture's content digest and variant name the entry.
Variant 0 is the picture as it is; variants 1..K are distorted copies with a seed
fixed per picture and variant, so distortions keep head training on the cache.
Entries computed together are stored together, one shard file per chunk; each shard
is written atomically, so two processes can share one cache.
"""
import hashlib
import json
import os
import sys
import uuid

import numpy as np
import tensorflow as tf

from retrain.common import atomic
from retrain.data.augment import distort, distortion_key
from retrain.data.inputs import broken_since_scan, decode, resize

# 1: one .npy file per entry (slower to write than small bases compute); 2: pictures
# decoded at full size (a JPEG is now decoded at the model's scale, other pixels); 3: a
# phone's multi-picture JPEG (MPO) decoded at full size (now at the model's scale, as
# graph.pb's decode_jpeg does).
CACHE_FORMAT = 4


def _sha1(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def entry_key(digest, variant):
    return f"{digest}_{variant}"


class BottleneckCache:
    """Feature vectors on disk in shards `root/<base key>/<name>.npz`, each holding
    `keys` (entry keys) and `vectors` (one row per key).

    A file per picture (retrain.py's way) made writing the cache slower than running a
    small base; shards of a chunk each cost one write. A damaged or foreign shard is
    skipped (its entries are computed again), never trusted.
    """

    def __init__(self, root, base_key):
        self.base_key = dict(base_key, format=CACHE_FORMAT)
        self.folder = os.path.join(root, _sha1(self.base_key)[:16])
        os.makedirs(self.folder, exist_ok=True)
        key_file = os.path.join(self.folder, "key.json")
        if not os.path.exists(key_file):  # for people looking into the cache
            atomic.write_json(key_file, self.base_key)
        self._index = None  # entry key -> (shard path, row)
        self._said_skipped = False

    def _shards(self):
        return sorted(os.path.join(self.folder, n) for n in os.listdir(self.folder)
                      if n.endswith(".npz") and not n.startswith("."))

    def index(self):
        """{entry key: (shard, row)} of every readable shard, read once."""
        if self._index is None:
            self._index = {}
            for shard in self._shards():
                keys = self._read(shard, "keys", ndim=1)
                if keys is not None:
                    self._index.update((str(k), (shard, row)) for row, k in enumerate(keys))
        return self._index

    def refresh(self):
        """Read the shards again: another process has added some (a multi-worker run)."""
        self._index = None

    def _read(self, shard, name, ndim):
        """The array `name` (`ndim` dimensions) of `shard`, or None when the shard cannot be
        read, whatever the reason (damaged by something outside kapps: its entries are
        computed again). The first such shard is named on stderr, once per cache."""
        try:
            with np.load(shard, allow_pickle=False) as z:
                array = z[name]
            if array.ndim != ndim:
                raise ValueError(f"{name} has {array.ndim} dimensions, not {ndim}")
            return array
        except Exception as err:  # noqa: BLE001 (a damaged zip raises anything: skipped)
            if not self._said_skipped:
                self._said_skipped = True
                reason = " ".join(str(err).split())[:120]
                print(f"Skipping bottleneck shards that cannot be read, first {shard} "
                      f"({type(err).__name__}: {reason}); their features are computed again.",
                      file=sys.stderr, flush=True)
            return None

    def _by_shard(self, keys):
        """{shard: [(key, row in the shard)]} of the `keys` that are in the index."""
        by_shard = {}
        for key in keys:
            where = self.index().get(key)
            if where:
                by_shard.setdefault(where[0], []).append((key, where[1]))
        return by_shard

    def get_many(self, keys):
        """{key: vector} for the `keys` that are in the cache."""
        found = {}
        for shard, entries in self._by_shard(keys).items():
            vectors = self._read(shard, "vectors", ndim=2)
            if vectors is not None:
                found.update((key, vectors[row]) for key, row in entries if row < len(vectors))
        return found

    def read_into(self, rows, out):
        """Write the vector of each key of `rows` ({key: row of `out`}) that is in the cache
        to `out[row]`, one shard at a time; returns the keys found.

        Nothing but `out` holds the vectors afterwards: a dict of rows of every shard kept
        each shard's whole array alive (16 KB resident per 5 KB vector at 10k pictures).
        A shard whose vectors are not `out`'s width is skipped as damaged.
        """
        found = []
        for shard, entries in self._by_shard(rows).items():
            vectors = self._read(shard, "vectors", ndim=2)
            if vectors is None or vectors.shape[1] != out.shape[1]:
                continue
            entries = [(key, row) for key, row in entries if row < len(vectors)]
            out[[rows[key] for key, _ in entries]] = vectors[[row for _, row in entries]]
            found.extend(key for key, _ in entries)
        return found

    def put_many(self, keys, vectors):
        """Store `vectors` (one row per key) as a new shard."""
        vectors = np.asarray(vectors, np.float32)
        path = os.path.join(self.folder, uuid.uuid4().hex + ".npz")
        with atomic.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.array(keys, dtype=str), vectors=vectors)
        index = self.index()
        index.update((key, (path, row)) for row, key in enumerate(keys))


def variant_names(config):
    """Names of the cached variants training draws from: the plain picture, plus distorted ones."""
    if not config.distorts:
        return ["v0"]
    key = _sha1(distortion_key(config))[:8]
    return ["v0"] + [f"d{key}_{k}" for k in range(1, config.distorted_variants + 1)]


def _seed_of(digest, variant):
    h = hashlib.sha1(f"{digest}/{variant}".encode()).digest()
    return np.frombuffer(h[:8], np.int32).astype(np.int64)


def _pictures(jobs, size, config, batch_size):
    """Batches of the pictures of `jobs` [(record, variant)], distorted where the variant says."""

    def prepare(path, seed, distorted):
        pixels = tf.cast(decode(path, size), tf.float32)
        return tf.cond(distorted & (tf.size(pixels) > 0),
                       lambda: distort(pixels, size, config, seed), lambda: resize(pixels, size))

    paths = np.array([r.path for r, _ in jobs]).astype(str)
    seeds = np.stack([_seed_of(r.digest, v) for r, v in jobs])
    distorted = np.array([v != "v0" for _, v in jobs])
    return (tf.data.Dataset.from_tensor_slices((paths, seeds, distorted))
            .map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def _extraction(extractor, cache, size, config, pictures, batch_size, verbose):
    """(runtime name, `run`): `run(dataset of pixel batches)` gives their features.

    `config.runtime` picks TensorFlow (`extractor.predict`) or a conversion of the
    extractor (`retrain.prediction.runtimes`), cached in the cache's folder as `base.tflite` or
    `base.onnx`, so it is keyed like the features and made once per base. The pictures
    still go through the same tf.data pipeline (decoding, distortions) either way.
    """
    from retrain.prediction import runtimes

    paths = {name: runtimes.converted_path(cache.folder, "base", name)
             for name in runtimes.CONVERTED}
    runtime = getattr(config, "runtime", "auto")
    if runtime == "auto" and tf.config.list_logical_devices("GPU"):
        runtime = "tensorflow"  # conversions run on the CPU, where the crossover was measured
    chosen = runtimes.choose(runtime, pictures,
                             runtimes.extract_crossover(size),
                             {name: os.path.isfile(path) for name, path in paths.items()})
    if chosen != "tensorflow":
        backend = runtimes.load_converted(chosen, paths[chosen], batch_size)
        if backend is None:
            if verbose:
                print(f"Converting the base for {runtimes.NAMES[chosen]} (once: it is kept "
                      "with the bottlenecks)")
            backend = runtimes.make_converted(
                chosen, paths[chosen],
                lambda path: runtimes.convert(extractor, path, (size, size), chosen),
                "the base", "extracting features", batch_size)
        if backend is not None:
            return chosen, lambda dataset: np.concatenate(
                [backend.infer(batch.numpy()) for batch in dataset])
    return "tensorflow", lambda dataset: extractor.predict(dataset, verbose=0)


def _compute(run, jobs, size, config, batch_size, verbose, chunk=1024):
    """Run the base (`run`, see `_extraction`) over `jobs`; yield (chunk of jobs, their vectors).

    Works in chunks, so an interrupted run keeps every finished chunk in the cache and
    the next run starts from there.
    """
    progress = tf.keras.utils.Progbar(len(jobs), unit_name="picture", verbose=verbose)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    for start in range(0, len(jobs), chunk):
        part = jobs[start:start + chunk]
        # Under MirroredStrategy a last batch smaller than the replica count leaves a
        # replica without a picture, which Keras 3.15 cannot run (`fit.batched` says
        # more): the last batch is filled with copies, whose features are dropped.
        extra = (-len(part)) % batch_size if replicas > 1 else 0
        vectors = run(_pictures(part + part[-1:] * extra, size, config, batch_size))
        yield part, vectors[:len(part)]
        progress.update(start + len(part))


def cached_features(extractor, cache, requests, size, config, batch_size=32, verbose=1):
    """Features for each request `{name: (records, variants)}`: `{name: array (N, V, D)}`.

    Missing entries of all requests are computed together, in one pass of `extractor`
    (raw pixels in, vector out), and stored; `extractor` is only run when something is
    missing, on TensorFlow or on a converted copy as `config.runtime` says (`_extraction`).
    A picture that cannot be read any more is neither stored nor returned.
    Batches of 32 (64 before) halve the base's activations in memory (about 0.5 GB less
    for MobileNetV2 at 224 px) and ran as fast or faster on 2 cores.
    Every vector, cached or computed, is written straight into one float32 array made
    up front (the arrays returned are views of it), so the features are held once.
    Returns (features by name, number computed, {path: reason} of the pictures left out);
    each name's rows follow its records with those left out.
    """
    features, flat, wanted, copies = _allocate(requests, extractor.output_shape[-1])
    found = set(cache.read_into({key: row for key, (_, _, row) in wanted.items()}, flat))
    jobs = [(r, v) for key, (r, v, _) in wanted.items() if key not in found]
    if jobs:
        if verbose:
            cached = len(wanted) - len(jobs)
            print(f"Computing {len(jobs)} bottleneck{'s' if len(jobs) != 1 else ''} ({cached} "
                  f"of {len(wanted)} {'was' if cached == 1 else 'were'} cached)")
        _, run = _extraction(extractor, cache, size, config, len(jobs), batch_size, verbose)
        for part, computed in _compute(run, jobs, size, config, batch_size, verbose):
            broken = broken_since_scan([r for r, _ in part])
            kept = [i for i, (r, _) in enumerate(part) if r.path not in broken]
            if kept:
                keys = [entry_key(part[i][0].digest, part[i][1]) for i in kept]
                cache.put_many(keys, computed[kept])
                flat[[wanted[key][2] for key in keys]] = computed[kept]
    for row, first in copies:  # a file's copies (the same bytes) share one entry
        flat[row] = flat[first]
    # A file's copies (the same bytes) were computed as one job: all of them are left out.
    failed = broken_since_scan([r for r, _ in jobs])
    reasons = {r.digest: failed[r.path] for r, _ in jobs if r.path in failed}
    left_out = {r.path: reasons[r.digest] for records, _ in requests.values()
                for r in records if r.digest in reasons}
    for name, (records, _) in requests.items():
        features[name] = _without(features[name], [r.path not in left_out for r in records])
    return features, sum(r.digest not in reasons for r, _ in jobs), left_out


def _allocate(requests, dim):
    """One float32 array for every vector of `requests` and where each goes:
    (`{name: (N, V, dim) view}`, the (rows, dim) array, `{entry key: (record, variant,
    row)}` of the first row of each entry, [(row, first row)] of the entries asked for
    again (a file's copies, or a picture in two requests))."""
    total = sum(len(records) * len(variants) for records, variants in requests.values())
    flat = np.empty((total, dim), np.float32)
    features, wanted, copies, row = {}, {}, [], 0
    for name, (records, variants) in requests.items():
        features[name] = flat[row:row + len(records) * len(variants)].reshape(
            len(records), len(variants), dim)
        for r in records:
            for v in variants:
                key = entry_key(r.digest, v)
                if key in wanted:
                    copies.append((row, wanted[key][2]))
                else:
                    wanted[key] = (r, v, row)
                row += 1
    return features, flat, wanted, copies


def _without(array, keep):
    """`array` with only the rows where `keep` is true, moved down in place (a copy of a
    split's kept rows would double its memory when a few files broke)."""
    if all(keep):
        return array
    kept = 0
    for row, wanted in enumerate(keep):
        if wanted:
            array[kept] = array[row]
            kept += 1
    return array[:kept]
