"""Compiling and fitting: optimizer, warmup + cosine schedule, label smoothing, class
weights, keep-best and early stopping, Ctrl-C that keeps the best model so far.

`train` fits a linear head on cached features to its optimum with L-BFGS
(`retrain.train.linear`, the default where it applies), or runs Keras' fit: of a head on
cached features, or of a whole classifier on pictures decoded in parallel (fine-tuning).
"""
import contextlib
import math
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from kapps.errors import UserError
from retrain.data.inputs import broken_since_scan, decode, resize
from retrain.train import image_batches, linear, multi_worker
from retrain.train.cluster import strategy_name, uses_strategy
from retrain.train.image_batches import (batched, image_dataset, image_steps,  # noqa: F401
                                         training_batches)

_STRATEGY = []


def strategy_scope(config, feature_pass=False):
    """The scope of `config`'s strategy (`retrain.train.cluster.strategy_name`): `MirroredStrategy`
    over the local devices, or the `MultiWorkerMirroredStrategy` that `multi_worker.start`
    made; else a no-op. With `feature_pass`, a multi-worker run gets no scope: each worker
    runs the base over its own share of the pictures (`retrain.train.feature_shares`)."""
    name = strategy_name(config)
    if name == "multi_worker":
        if multi_worker.strategy() is None:
            raise UserError("--distribute multi_worker: only `kapps retrain` trains across "
                            "machines (a search spreads its trials with keras-tuner's "
                            "chief/worker mode); pass --distribute mirrored or none")
        return contextlib.nullcontext() if feature_pass else multi_worker.strategy().scope()
    if name == "none":
        return contextlib.nullcontext()
    if not _STRATEGY:
        _STRATEGY.append(tf.distribute.MirroredStrategy())
    return _STRATEGY[0].scope()


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of the best epoch on validation (accuracy, then lower loss).

    Unlike `EarlyStopping(restore_best_weights=True)`, the best weights can be restored
    after an interrupted `fit` too, which is what Ctrl-C needs.
    """

    def __init__(self, monitor="val_accuracy"):
        super().__init__()
        self.monitor = monitor
        self.best = None
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            return
        score = (logs[self.monitor], -logs.get("val_loss", 0.0))
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, epoch
            self.best_weights = self.model.get_weights()

    def restore(self):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class CountedProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, counting only the batches an epoch has.

    With `steps_per_execution` (head training runs up to 64 batches per call), Keras
    reports a last, shorter group of batches as a whole one, so a 102-batch epoch showed
    `128/102` and a bar longer than its width.
    """

    def _update_progbar(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)
        super()._update_progbar(batch, logs)


# Below this many training batches in all, a head fits faster one batch per call.
HEAD_BATCHES_PER_CALL_FROM = 300


def head_steps_per_execution(epoch_steps, epochs):
    """Batches per compiled call when fitting a head on cached features.

    Several per call save Keras' overhead per call (about 0.7 ms a batch on 2 cores), but
    Keras then traces a `while_loop` around the train and validation steps, a fixed cost
    per fit that short fits do not earn back. On the digits (45 batches an epoch) a
    3-epoch tuning trial took about 0.15 s less one batch per call, 10 epochs of
    `kapps retrain` 0.1-0.3 s more; on random features (`bench/bench_head_fit.py`) 72
    pictures took 1.5 s against 2.0 s, 20,000 pictures 8.8 s against 5.0 s.
    """
    return 1 if epochs * epoch_steps < HEAD_BATCHES_PER_CALL_FROM else min(64, epoch_steps)


def steps_per_epoch(n, batch_size):
    return max(1, math.ceil(n / batch_size))


def epochs_for(config, n_train):
    """`how_many_training_steps` (retrain.py's flag, in batches) wins over `epochs`."""
    if config.how_many_training_steps:
        return max(1, math.ceil(config.how_many_training_steps /
                                steps_per_epoch(n_train, config.train_batch_size)))
    return config.epochs


def make_optimizer(config, total_steps, epoch_steps):
    """The config's optimizer with linear warmup then cosine decay of the learning rate."""
    warmup = int(min(config.warmup_epochs * epoch_steps, total_steps // 2))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(1, total_steps - warmup), alpha=0.0,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(schedule)
    return keras.optimizers.Adam(schedule)


def compile_model(model, config, num_classes, total_steps, epoch_steps,
                  steps_per_execution=1):
    """`steps_per_execution` > 1 runs several batches per compiled call: a head on cached
    features is so small that Keras' per-step overhead would dominate otherwise. Top-3
    accuracy is measured only with more than 3 classes (else it is always 1).

    Under a strategy the metrics are weighted: validation batches are padded to whole
    ones with pictures of weight 0 (`batched`), and Keras 3 weighs only `weighted_metrics`
    (the padding counted in the validation accuracy that picks the kept epoch). Training
    accuracy is then weighted by the class weights, as the loss is.
    """
    metrics = ["accuracy"]
    if num_classes > 3:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=3, name="top3_accuracy"))
    weighted = uses_strategy(config)
    model.compile(
        optimizer=make_optimizer(config, total_steps, epoch_steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=None if weighted else metrics, weighted_metrics=metrics if weighted else None,
        steps_per_execution=steps_per_execution)


def class_weights(labels, num_classes):
    """Balanced weights (sklearn's rule) so a big class does not drown a small one."""
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    out = dict.fromkeys(range(num_classes), 1.0)
    out.update({int(c): float(w) for c, w in zip(present, weights)})
    return out


def feature_batches(features, onehot, batch_size, training, seed=None, distribute=False,
                    epochs=1, first_epoch=0):
    """Batches of cached features and one-hot labels, gathered a whole batch at a time.

    In training, epochs `first_epoch` to `epochs` one after the other: epoch e's order is
    `image_batches.pass_order` of (seed, e), and the cached variant each picture takes a
    stateless draw from (seed, e, its batch), so a resumed run (`--backup_dir`) or
    another worker sees what one uninterrupted run does, whatever iterators Keras made
    before. `features` (N, V, D) and `onehot` are tensors made once per prepared data and
    gathered by index: `from_tensor_slices` on NumPy arrays would copy them into every
    trial's dataset graph, which TensorFlow does not give back (memory grew per trial). A
    map per picture cost more than training the head, hence one per batch. With
    `distribute`, batches are kept whole as `batched` explains (training drops an uneven
    last batch, validation is padded with copies of picture 0 of weight 0).
    """
    n = int(onehot.shape[0])
    if training:
        variants = int(features.shape[1])
        drop = distribute and n >= batch_size

        def one_epoch(epoch):
            draws = image_batches.pass_seed(seed, image_batches.VARIANT, epoch)

            def pick(index, number):
                variant = tf.random.stateless_uniform(
                    tf.shape(index), tf.random.experimental.stateless_fold_in(draws, number),
                    0, variants, tf.int64)
                return (tf.gather_nd(features, tf.stack([index, variant], axis=1)),
                        tf.gather(onehot, index))

            order = tf.data.Dataset.from_tensor_slices(
                image_batches.pass_order(n, seed, epoch)).batch(batch_size, drop_remainder=drop)
            return tf.data.Dataset.zip(order, tf.data.Dataset.range(n)).map(pick)

        return tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch).prefetch(
            tf.data.AUTOTUNE)

    def plain(index):
        real = index < n
        index = tf.where(real, index, tf.zeros_like(index))
        batch = (tf.gather_nd(features, tf.stack([index, tf.zeros_like(index)], axis=1)),
                 tf.gather(onehot, index))
        return batch + (tf.cast(real, tf.float32),) if distribute else batch

    extra = (-n) % batch_size if distribute else 0
    return tf.data.Dataset.range(n + extra).batch(batch_size).map(plain).prefetch(
        tf.data.AUTOTUNE)


def datasets(prepared, config, class_weight=None):
    """(train, validation or None, training steps per epoch) for the prepared data's
    mode: the training data hold every epoch, one after the other.

    Across workers, cached features are in memory on every worker, which keeps its share
    of every batch (`multi_worker.shard_batches`); pictures are read by each worker for
    its own rows only (`image_batches.worker_rows`), the class weights (`class_weight`)
    inside the data as sample weights.
    """
    if strategy_name(config) == "multi_worker" and not prepared.head_only:
        return _worker_datasets(prepared, config, class_weight)
    train, val, steps = _datasets(prepared, config)
    if strategy_name(config) == "multi_worker":
        train = multi_worker.shard_batches(train)
        val = val if val is None else multi_worker.shard_batches(val)
    return train, val, steps


def _has_validation(prepared, config):
    return len(prepared.labels["validation"]) > 0 and not config.train_on_validation


def _passes(config, n_train, steps):
    """Enough passes for every epoch even if each pass gave one batch, from the pass a
    `--backup_dir` run resumes at."""
    resumed = multi_worker.resumed_epoch(config.backup_dir) if config.backup_dir else 0
    return epochs_for(config, n_train) * steps, resumed


def _datasets(prepared, config):
    n = len(prepared.classes)
    whole = uses_strategy(config)
    has_val = _has_validation(prepared, config)
    if prepared.head_only:
        n_train = len(prepared.labels["train"])
        epochs, resumed = _passes(config, n_train, 1)
        train = feature_batches(*prepared.tensors("train"), config.train_batch_size, True,
                                config.seed, whole, epochs, resumed)
        val = feature_batches(*prepared.tensors("validation"), 256, False,
                              distribute=whole)
        return (train, (val if has_val else None),
                image_steps(n_train, config.train_batch_size, whole))
    size = prepared.base.image_size
    n_train = len(prepared.labels["train"])
    steps = image_steps(n_train, config.train_batch_size, whole)
    passes, resumed = _passes(config, n_train, steps)
    train = training_batches(prepared.records("train"), n, size, config,
                             config.train_batch_size, passes, whole, resumed)
    if not has_val:
        return train, None, steps
    val = image_dataset(prepared.records("validation"), n, size)
    return train, batched(val, len(prepared.labels["validation"]), config.train_batch_size,
                          whole), steps


def _worker_datasets(prepared, config, class_weight):
    """`_datasets` for a fine-tuning cluster: each worker's input made by
    `distribute_datasets_from_function`, which hands it the worker's place."""
    strategy = multi_worker.strategy()
    n, size, batch = len(prepared.classes), prepared.base.image_size, config.train_batch_size
    replicas = strategy.num_replicas_in_sync
    if batch % replicas:
        raise UserError(f"--train_batch_size {batch} does not split evenly between the "
                        f"cluster's {replicas} replicas: pass a multiple of {replicas}")
    records = prepared.records("train")
    steps = image_steps(len(records), batch, True)
    # Every pass gives `steps` batches here (nothing is left out), so a pass is an epoch.
    passes, resumed = _passes(config, len(records), 1)
    weights = None if class_weight is None else \
        [class_weight[r.class_index] for r in records]

    def train_input(context):
        return image_batches.worker_training_batches(
            records, n, size, config, batch, passes, context.input_pipeline_id,
            context.num_input_pipelines, context.get_per_replica_batch_size(batch), weights,
            resumed)

    train = strategy.distribute_datasets_from_function(train_input)
    if not _has_validation(prepared, config):
        return train, None, steps

    def validation_input(context):
        return image_batches.worker_validation_batches(
            prepared.records("validation"), n, size, batch, context.input_pipeline_id,
            context.num_input_pipelines, context.get_per_replica_batch_size(batch))

    return train, strategy.distribute_datasets_from_function(validation_input), steps


def seed_everything(config):
    """Seed Python, NumPy, Keras and TensorFlow from `config.seed`; with
    `config.deterministic` (the default) also make TensorFlow's kernels deterministic, so
    the same seed on the same machine gives the same history, kept epoch and weights.

    Op determinism is process-wide and cannot be switched off again: `--no-deterministic`
    only leaves it off in a process that never switched it on.
    """
    keras.utils.set_random_seed(config.seed)
    if getattr(config, "deterministic", True):
        tf.config.experimental.enable_op_determinism()


def train(model, prepared, config=None, callbacks=(), verbose=None):
    """Fit `model` on the prepared data; returns the `History`.

    `history.head_fit` says which fit ran and why (for the log and metrics.json): L-BFGS
    on the cached features (`fit_linear`) where `retrain.train.linear.chosen_head_fit` picks
    it, else Keras' fit. Ctrl-C stops Keras' fit cleanly: the best weights so far are
    restored and `history.interrupted` is set, so the caller can still evaluate and export.
    """
    config = config or prepared.config
    verbose = config.verbose if verbose is None else verbose
    if not len(prepared.labels["train"]):
        raise UserError(f"no training pictures in {config.image_dir}: the split put every "
                        "picture in validation or test (it hashes each file's name); add "
                        "pictures, or lower --testing_percentage and --validation_percentage")
    if prepared.head_only and linear.chosen_head_fit(config) == "lbfgs":
        return fit_linear(model, prepared, config, callbacks, verbose)
    seed_everything(config)
    n_train = len(prepared.labels["train"])
    epochs = epochs_for(config, n_train)
    epoch_steps = steps_per_epoch(n_train, config.train_batch_size)
    with strategy_scope(config):
        compile_model(model, config, len(prepared.classes), epochs * epoch_steps, epoch_steps,
                      steps_per_execution=head_steps_per_execution(epoch_steps, epochs)
                      if prepared.head_only else 1)
    weights = class_weights(prepared.labels["train"], len(prepared.classes)) \
        if config.class_weights else None
    train_ds, val_ds, train_steps = datasets(prepared, config, weights)
    if not isinstance(train_ds, tf.data.Dataset):  # the weights are in the data already
        weights = None
    history = keras.callbacks.History()
    keep_best = KeepBest()
    history.epoch_ended_at = []  # Unix times, to tell how long a run took to its best epoch
    clock = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: history.epoch_ended_at.append(time.time()))
    extra = [history, keep_best, clock, CountedProgbarLogger()]
    cluster = multi_worker.current_cluster()
    if getattr(config, "summaries_dir", None) and (cluster is None or cluster.is_chief):
        # One writer: the workers log the same (all-reduced) losses and metrics.
        extra.append(keras.callbacks.TensorBoard(log_dir=config.summaries_dir))
    if getattr(config, "backup_dir", None):
        extra.append(multi_worker.backup_callback(config.backup_dir, cluster))
    if config.early_stopping and val_ds is not None:
        extra.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", patience=config.early_stopping))
    history.interrupted = False
    if verbose and prepared.head_only:
        print(linear.keras_fit_line(config))
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights,
                  steps_per_epoch=train_steps, shuffle=False,
                  callbacks=extra + list(callbacks), verbose=verbose)
    except KeyboardInterrupt:
        history.interrupted = True
        print("\nInterrupted: stopping training and keeping the best model so far.")
    keep_best.restore()
    history.resumed_after, history.best_epoch = kept_epoch(history.epoch, keep_best.best_epoch)
    history.head_fit = {"method": "keras", "summary": linear.keras_fit_line(config),
                        "reason": linear.keras_fit_reason(config) or "asked for"}
    return history


def kept_epoch(epochs, best):
    """(epochs restored from a backup, the kept epoch's index in this run's history).

    A run that --backup_dir resumed after epoch e numbers its epochs from e (Keras'
    `History.epoch`, `epochs`) and its history holds only those, so `best` (Keras'
    number) is counted from the first of them; None stays None.
    """
    resumed_after = epochs[0] if epochs else 0
    return resumed_after, None if best is None else best - resumed_after


def _dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def fit_linear(model, prepared, config, callbacks=(), verbose=1):
    """Fit the head `model` (dropout then one Dense softmax layer) as an L2-regularised
    logistic regression on the cached features (`retrain.train.linear`), with the config's
    label smoothing and class weights; returns a `History` of one "epoch" holding its
    training and validation loss (plain cross-entropy) and accuracy.

    Dropout only acts in Keras' fit and does not enter here. `callbacks` (a search's)
    see that one epoch end, as after one epoch of Keras' fit.
    """
    seed_everything(config)
    n = len(prepared.classes)
    has_val = len(prepared.labels["validation"]) > 0 and not config.train_on_validation
    train_x, train_y = prepared.features["train"][:, 0], prepared.labels["train"]
    val_x, val_y = (prepared.features["validation"][:, 0], prepared.labels["validation"]) \
        if has_val else (None, None)
    weights = None
    if config.class_weights:
        by_class = class_weights(train_y, n)
        weights = np.array([by_class[int(y)] for y in train_y])
    fit = linear.fit_linear_head(train_x, train_y, n, val_x, val_y, weights, config.l2,
                                 config.label_smoothing, config.seed, verbose)
    (dense,) = _dense_layers(model)
    dense.set_weights([fit.kernel, fit.bias])
    logs = {}
    for prefix, x, y in (("", train_x, train_y), ("val_", val_x, val_y)):
        if y is None or not len(y):
            continue
        probabilities = np.concatenate([np.asarray(model(x[i:i + 256], training=False))
                                        for i in range(0, len(x), 256)])
        logs[prefix + "loss"] = linear.log_loss(probabilities, y)
        logs[prefix + "accuracy"] = float(np.mean(probabilities.argmax(1) == y))
        if n > 3:
            logs[prefix + "top3_accuracy"] = float(np.mean(
                (np.argsort(-probabilities, axis=1)[:, :3] == y[:, None]).any(axis=1)))
    history = keras.callbacks.History()
    listeners = keras.callbacks.CallbackList([history] + list(callbacks), model=model)
    listeners.on_train_begin()
    listeners.on_epoch_begin(0)
    listeners.on_epoch_end(0, logs)
    listeners.on_train_end(logs)
    history.epoch_ended_at = [time.time()]
    history.best_epoch = 0 if has_val else None
    history.interrupted = False
    history.head_fit = {"method": "lbfgs", "summary": fit.summary(), "C": fit.c,
                        "l2": 1 / fit.c, "chosen_by": fit.chosen_by,
                        "held_out_pictures": fit.held_out, "folds": fit.folds or None,
                        "iterations": fit.iterations, "converged": fit.converged,
                        "seconds": round(fit.seconds, 3), "grid": fit.grid}
    if verbose:
        print(history.head_fit["summary"])
    return history


def predict_split(model, prepared, split, batch_size=64):
    """Class scores (N, classes) of the trained `model` on `split`, row i for
    `prepared.records(split)[i]` once the pictures that broke since the scan are left out.

    Fine-tuned models see the pictures as `retrain.Predictor` feeds them (decoded, resized
    with the model's bilinear resize, not rounded), so the test accuracy is what
    prediction gives.
    """
    if prepared.head_only:
        # The head called directly, 256 rows at a time: `model.predict` would trace a
        # function for a few calls of a tiny network (and its tf.data pipeline made
        # TensorFlow print a NodeDef error line).
        features = prepared.features[split][:, 0]
        scores = np.concatenate([np.asarray(model(features[i:i + 256], training=False))
                                 for i in range(0, len(features), 256)]) \
            if len(prepared.labels[split]) else None
    else:
        records = prepared.records(split)
        paths = np.array([r.path for r in records]).astype(str)
        size = prepared.base.image_size
        ds = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda p: resize(decode(p, size), size), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        predict = multi_worker.predict_locally if multi_worker.strategy() else \
            lambda model, batches: model.predict(batches, verbose=0)
        scores = predict(model, ds.batch(batch_size)) if len(paths) else None
        broken = broken_since_scan(records)
        if scores is not None and broken:
            scores = scores[[r.path not in broken for r in records]]
        prepared.leave_out_broken()
    if scores is None or not len(prepared.labels[split]):
        return np.zeros((0, len(prepared.classes)), np.float32)
    return scores
