"""Batches of decoded pictures for Keras' fit of a whole classifier (fine-tuning).

Pass p over the training pictures has an order drawn from (seed, p) and each picture a
distortion drawn from (seed, p, its place in the pass): a pure function of the seed and
the pass, the same in every iterator and on every worker, so a resumed run and a
cluster train on what one uninterrupted run would.

On a cluster each worker reads only its rows of every batch (`worker_rows`), the rows
TensorFlow's rebatching would give its replicas: a step of the cluster sees the batch
one worker would, and each worker decodes its share of the pictures.
"""
import keras
import numpy as np
import tensorflow as tf

from retrain.data.augment import distort
from retrain.data.inputs import decode, readable, resize


def _cacheable(n, size, limit_bytes=4 << 30):
    return n * size * size * 3 <= limit_bytes


# Salts that keep the random streams apart: the training order, the distortions of
# pictures, the variants (cached distortions) of features.
ORDER, DISTORTION, VARIANT = 1, 2, 3


def pass_seed(seed, salt, pass_index):
    """The stateless-op seed of pass `pass_index` over the training pictures."""
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, salt], tf.int64),
                                                    tf.cast(pass_index, tf.int64))


def pass_order(count, seed, pass_index):
    """Pass `pass_index`'s permutation of `count` pictures."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(count, dtype=tf.int64), pass_seed(seed, ORDER, pass_index))


def _picture(pixels, y, place, pass_index, size, config):
    """uint8 `pixels` as float32, distorted (where the config asks) by the seed of their
    `place` in pass `pass_index`."""
    pixels = tf.cast(pixels, tf.float32)
    if config.distorts:
        seed = tf.random.experimental.stateless_fold_in(
            pass_seed(config.seed, DISTORTION, pass_index), tf.cast(place, tf.int64))
        pixels = distort(pixels, size, config, seed)
    return pixels, y


def _decoded(ds, size, training):
    """(path, label) elements decoded to uint8 pixels at `size`, in order; the label
    (any structure) passes through.

    In training a picture that broke since the scan is left out (`retrain.data.inputs`);
    otherwise it is kept with weight 0 as a third element, so no metric counts it and an
    epoch keeps its length.
    """
    ds = ds.map(lambda p, y: (decode(p, size), y), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    as_uint8 = lambda x: tf.cast(tf.round(resize(x, size)), tf.uint8)  # noqa: E731
    if training:
        return ds.filter(lambda x, y: readable(x)).map(
            lambda x, y: (as_uint8(x), y), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
    return ds.map(lambda x, y: (as_uint8(x), y, tf.cast(readable(x), tf.float32)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _onehot(records, num_classes):
    return keras.utils.to_categorical([r.class_index for r in records],
                                      num_classes).astype("float32")


def _paths(records):
    return np.array([r.path for r in records]).astype(str)


def training_batches(records, num_classes, size, config, batch_size, passes,
                     distribute=False, first_pass=0):
    """Passes `first_pass` to `passes` over the decoded training pictures, in batches
    (float32 pixels, one-hot), distorted where the config asks; an epoch is `image_steps`
    batches, a pass where no picture broke since the scan.

    Pass p's order and distortions are a pure function of (`config.seed`, p) (see the
    module's docstring). A `shuffle` that reshuffles draws a new order for each iterator
    made over it, those `repeat` makes included, so the passes an iterator saw depended
    on every iterator before it: under a strategy, Keras reads one batch to build the
    model from an iterator it then drops, which read ahead a number of passes that
    depended on timing. A run that `BackupAndRestore` resumes at epoch e starts at pass
    e: it trains on what the run it stands in for would have.

    The pictures are decoded once and kept in memory as one uint8 tensor where they
    fit (`_cacheable`), else each pass decodes its pictures again in its order. With
    `distribute` each batch is whole (`batched` says why): the rest of a pass is dropped,
    a different rest each pass. `passes` bounds the data, so a run whose pictures all broke
    since the scan ends (Keras warns that its input ran out) instead of waiting forever.
    """
    paths, onehot = _paths(records), _onehot(records, num_classes)
    drop = distribute and len(records) >= batch_size

    if _cacheable(len(records), size):
        everything = _decoded(tf.data.Dataset.from_tensor_slices((paths, onehot)), size,
                              True).batch(len(records)).cache()

        def one_pass(kept, pass_index):
            pixels, y = kept
            count = tf.shape(y, out_type=tf.int64)[0]
            return tf.data.Dataset.from_tensor_slices(
                (pass_order(count, config.seed, pass_index), tf.range(count))).map(
                lambda i, place: _picture(tf.gather(pixels, i), tf.gather(y, i), place,
                                          pass_index, size, config),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(
                batch_size, drop_remainder=drop)

        ds = tf.data.Dataset.zip(everything.repeat(passes - first_pass),
                                 tf.data.Dataset.range(first_pass, passes))
    else:
        def one_pass(pass_index):
            shuffled = pass_order(len(records), config.seed, pass_index)
            ds = tf.data.Dataset.from_tensor_slices(
                (tf.gather(paths, shuffled), tf.gather(onehot, shuffled)))
            ds = tf.data.Dataset.zip(_decoded(ds, size, True), tf.data.Dataset.range(len(records)))
            return ds.map(lambda element, place: _picture(*element, place, pass_index, size,
                                                          config),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(
                batch_size, drop_remainder=drop)

        ds = tf.data.Dataset.range(first_pass, passes)
    return ds.flat_map(one_pass).prefetch(tf.data.AUTOTUNE)


def worker_rows(steps, batch_size, worker, workers):
    """The places (within a pass of `steps` whole batches of `batch_size`) that worker
    `worker` of `workers` reads: the `batch_size / workers` rows of its block of each
    batch, as TensorFlow's rebatching splits a global batch among the replicas, worker by
    worker. The blocks of all workers, step by step, are the batches one worker reads."""
    share = batch_size // workers
    return np.arange(steps * batch_size, dtype=np.int64).reshape(
        steps, workers, share)[:, worker].reshape(-1)


def worker_training_batches(records, num_classes, size, config, batch_size, passes,
                            worker, workers, replica_batch, weights=None, first_pass=0):
    """This worker's part of `training_batches`' passes (`distribute` on): batches of
    `replica_batch` (pixels, one-hot, weight), its rows of every global batch of
    `batch_size` (`worker_rows`), decoded here and nowhere else, every pass.

    Every worker must read as many batches as the others, so a picture that broke since
    the scan is kept with weight 0 (black pixels) rather than left out. `weights` (one
    per record: its class weight, else 1) become sample weights, as Keras'
    `class_weight` would make them (it cannot map a dataset distributed by function).
    """
    paths, onehot = _paths(records), _onehot(records, num_classes)
    weights = np.ones(len(records), np.float32) if weights is None else \
        np.asarray(weights, np.float32)
    steps = image_steps(len(records), batch_size, distribute=True)
    places = worker_rows(steps, batch_size, worker, workers) % len(records)

    def one_pass(pass_index):
        picked = tf.gather(pass_order(len(records), config.seed, pass_index), places)
        ds = tf.data.Dataset.from_tensor_slices((
            tf.gather(paths, picked),
            (tf.gather(onehot, picked), tf.gather(weights, picked), places)))
        return _decoded(ds, size, False).map(
            lambda x, label, ok: _picture(x, label[0], label[2], pass_index, size, config)
            + (label[1] * ok,),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(replica_batch)

    return tf.data.Dataset.range(first_pass, passes).flat_map(one_pass).prefetch(
        tf.data.AUTOTUNE)


def image_dataset(records, num_classes, size):
    """Decoded validation pictures, unbatched (pixels, one-hot, weight) as `_decoded`
    gives them (uint8 kept in memory when they fit), pixels as float32."""
    ds = _decoded(tf.data.Dataset.from_tensor_slices((_paths(records),
                                                      _onehot(records, num_classes))),
                  size, False)
    if _cacheable(len(records), size):
        ds = ds.cache()
    return ds.map(lambda x, *rest: (tf.cast(x, tf.float32),) + tuple(rest))


def worker_validation_batches(records, num_classes, size, batch_size, worker, workers,
                              replica_batch):
    """This worker's rows (`worker_rows`) of `batched`'s whole validation batches:
    (pixels, one-hot, weight) in batches of `replica_batch`, the padding (copies of
    picture 0) and broken pictures of weight 0, decoded here only, every epoch.

    Not `cache()`d: cached, Keras' iterators under the strategy now and then read an
    unfinished in-memory cache and saw 22 pictures of 26 in an epoch (another epoch
    was kept).
    """
    steps = -(-len(records) // batch_size)
    places = worker_rows(steps, batch_size, worker, workers)
    real = (places < len(records)).astype(np.float32)
    picked = np.where(places < len(records), places, 0)
    ds = tf.data.Dataset.from_tensor_slices((_paths(records)[picked],
                                             (_onehot(records, num_classes)[picked], real)))
    return _decoded(ds, size, False).map(lambda x, label, ok: (tf.cast(x, tf.float32), label[0], label[1] * ok)
                  ).batch(replica_batch).prefetch(tf.data.AUTOTUNE)


def image_steps(n, batch_size, distribute=False):
    """Training batches per epoch of `n` pictures (`training_batches` drops an uneven
    last one under a strategy)."""
    return n // batch_size if distribute and n >= batch_size else -(-n // batch_size)


def batched(ds, n, batch_size, distribute=False):
    """Batch the validation `ds` of `n` elements; with a strategy, keep every batch whole.

    The replicas cannot split an uneven last batch (Keras 3.15 fails in `AddN`): in
    training the remainder is dropped (`training_batches`), here it is padded with
    copies of weight 0, which keeps the accuracy exact.
    """
    if distribute:
        extra = (-n) % batch_size
        if extra:
            padding = ds.take(1).map(lambda x, y, w: (x, y, tf.constant(0.0))).repeat(extra)
            ds = ds.concatenate(padding)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
