"""The bottleneck cache: features of the frozen base, computed once per picture.

Head training, a second run, another head and every tuning trial read features
from here instead of running the base over the pictures again. An entry is keyed
by what determines it: the base (architecture, weights file, input size, pooling)
names a sub-folder, the picture's content digest and variant name the file.
Variant 0 is the picture as it is; variants 1..K are distorted copies with a seed
fixed per picture and variant, so distortions keep head training on the cache.
Each file is written atomically, so two processes can share one cache.
"""
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from retrain import atomic
from retrain.augment import distort, distortion_key
from retrain.inputs import decode

CACHE_FORMAT = 1


def _sha1(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


class BottleneckCache:
    """Feature vectors on disk under `root/<base key>/<digest[:2]>/<digest>_<variant>.npy`."""

    def __init__(self, root, base_key):
        self.base_key = dict(base_key, format=CACHE_FORMAT)
        self.folder = os.path.join(root, _sha1(self.base_key)[:16])
        os.makedirs(self.folder, exist_ok=True)
        key_file = os.path.join(self.folder, "key.json")
        if not os.path.exists(key_file):  # for people looking into the cache
            atomic.write_json(key_file, self.base_key)

    def path(self, digest, variant):
        return os.path.join(self.folder, digest[:2], f"{digest}_{variant}.npy")

    def get(self, digest, variant):
        try:
            return np.load(self.path(digest, variant))
        except (OSError, ValueError):  # absent, or damaged by something outside kapps
            return None

    def put(self, digest, variant, vector):
        path = self.path(digest, variant)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(vector, np.float32))


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
        pixels = decode(path)
        return tf.cond(distorted, lambda: distort(pixels, size, config, seed),
                       lambda: tf.image.resize(pixels, [size, size]))

    paths = np.array([r.path for r, _ in jobs]).astype(str)
    seeds = np.stack([_seed_of(r.digest, v) for r, v in jobs])
    distorted = np.array([v != "v0" for _, v in jobs])
    return (tf.data.Dataset.from_tensor_slices((paths, seeds, distorted))
            .map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def _compute(extractor, jobs, size, config, batch_size, verbose, chunk=2048):
    """Run the base over `jobs` and yield (record, variant, vector).

    Works in chunks with Keras' compiled `predict`, so an interrupted run keeps every
    finished chunk in the cache and the next run starts from there.
    """
    progress = tf.keras.utils.Progbar(len(jobs), unit_name="picture", verbose=verbose)
    for start in range(0, len(jobs), chunk):
        part = jobs[start:start + chunk]
        vectors = extractor.predict(_pictures(part, size, config, batch_size), verbose=0)
        yield from ((record, variant, vector) for (record, variant), vector in zip(part, vectors))
        progress.update(start + len(part))


def cached_features(extractor, cache, requests, size, config, batch_size=64, verbose=1):
    """Features for each request `{name: (records, variants)}`: `{name: array (N, V, D)}`.

    Missing entries of all requests are computed together, in one pass of `extractor`
    (raw pixels in, vector out), and stored; `extractor` is only run when something is
    missing. Returns (features by name, number computed).
    """
    vectors = {}
    jobs = []
    wanted = {(r.digest, v): r for records, variants in requests.values()
              for r in records for v in variants}
    for (digest, variant), record in wanted.items():
        vector = cache.get(digest, variant)
        if vector is None:
            jobs.append((record, variant))
        else:
            vectors[digest, variant] = vector
    if jobs:
        if verbose:
            print(f"Computing {len(jobs)} bottlenecks ({len(wanted) - len(jobs)} of "
                  f"{len(wanted)} were cached)")
        for record, variant, vector in _compute(extractor, jobs, size, config, batch_size,
                                                verbose):
            cache.put(record.digest, variant, vector)
            vectors[record.digest, variant] = vector
    dim = extractor.output_shape[-1]
    features = {
        name: np.array([[vectors[r.digest, v] for v in variants] for r in records],
                       np.float32).reshape(len(records), len(variants), dim)
        for name, (records, variants) in requests.items()}
    return features, len(jobs)
