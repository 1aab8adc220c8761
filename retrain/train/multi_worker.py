"""Training on several machines with TensorFlow's `MultiWorkerMirroredStrategy`.

Every worker runs the same `kapps retrain`: the strategy keeps one copy of the
variables per worker and all-reduces the gradients of each step over gRPC, so the
workers train one model in sync. What this module adds around it:

- The strategy must exist before TensorFlow runs its first op (it configures the
  collective ops at start-up), so `start` makes it first thing in a run.
- Keras 3.15's `fit` does not run under it as shipped (keras-team/keras#20585): two
  reductions assume one worker. `_patch_keras` mends those two, for multi-worker runs only.
- In fine-tuning each worker reads and decodes only its rows of every batch
  (`retrain.train.image_batches.worker_rows`, by `distribute_datasets_from_function`):
  one step of the cluster sees the very batch one worker would, so a run matches a
  one-worker run with the same seed. Cached features, in memory on every worker, are
  shared out by `AutoShardPolicy.DATA` (`shard_batches`).
- A worker that stops answering ends the others' `fit` with TensorFlow's
  `UnavailableError`; `failure_message` turns it into one line naming that worker.
"""
import contextlib
import re

from kapps.errors import UserError
from retrain.train.cluster import cluster_for

_STARTED = []  # (cluster, strategy, run name), made once per process


def start(config):
    """Make the strategy of a multi-worker `config` (once per process) before any other
    TensorFlow op; returns its `Cluster`, or None for any other run."""
    cluster = cluster_for(config)
    if cluster is None:
        return None
    if _STARTED:
        if _STARTED[0][0] != cluster:
            raise UserError("TF_CONFIG changed since this process joined its cluster: run "
                            "each multi-worker retrain in its own process")
        return cluster
    from tensorflow.python.eager import context

    if context.context()._context_handle is not None:  # noqa: SLF001 (no public probe)
        raise UserError("a multi-worker run must start TensorFlow itself: this process has "
                        "run TensorFlow already; run `kapps retrain` (or `retrain(...)`) in "
                        "a fresh process")
    _patch_keras()
    strategy = _join(cluster, config.worker_timeout, config.verbose)
    _STARTED.append((cluster, strategy, _agree_on_run(cluster, config.worker_timeout)))
    return cluster


def _agree_on_run(cluster, timeout):
    """A name for this run that every worker holds: the chief draws it and puts it in
    the coordination service's key-value store, the others read it from there. Files
    a run leaves in a shared folder (`retrain.train.feature_shares`' markers) carry it,
    so a rerun never takes an earlier run's files for its own."""
    import uuid

    import tensorflow as tf
    from tensorflow.python.eager import context

    key = "kapps/run"
    if cluster.is_chief:
        run = uuid.uuid4().hex
        context.context().set_config_key_value(key, run)
        return run
    try:
        return context.context().get_config_key_value(
            key, timeout_in_ms=max(1, round(timeout * 1000)))
    except tf.errors.OpError as err:
        raise UserError(f"{cluster.describe(0)} did not start the run within {timeout:g} s "
                        f"({type(err).__name__}): start the same command there, or raise "
                        "--worker_timeout") from None


def _join(cluster, timeout, verbose=1):
    """The strategy, made once every task of `cluster` has joined.

    TensorFlow's coordination service (which the strategy starts as it would itself,
    `_coordination`) waits for every task to register, for an hour unless told; here
    for `timeout` seconds, then a `UserError` naming the tasks that were not listening
    (`not_listening`). An address of this task already in use is one line too.
    """
    import tensorflow as tf

    others = [rank for rank in range(cluster.workers) if rank != cluster.rank]
    if verbose:
        print(f"{cluster.describe()} waiting for {', '.join(map(cluster.describe, others))} "
              f"to join (up to {timeout:g} s, --worker_timeout)", flush=True)
    _coordination(timeout)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
            tf.errors.AbortedError, tf.errors.InternalError) as err:
        missing = [cluster.describe(rank) for rank in not_listening(cluster, others)]
        who = ", ".join(missing) if missing else "another worker"
        raise UserError(
            f"{who} did not join the cluster within {timeout:g} s "
            f"({type(err).__name__}): start the same command there with its TF_CONFIG "
            "(task index), check that its address is reachable from here, or raise "
            "--worker_timeout") from None
    except tf.errors.UnknownError as err:
        if "Could not start gRPC server" not in str(err):
            raise
        raise UserError(
            f"{cluster.describe()} could not listen on {cluster.addresses[cluster.rank]}, "
            "its address in TF_CONFIG: another program (or an earlier run still ending) "
            "holds the port; stop it or give this task a free port") from None


def _coordination(timeout):
    """Configure TensorFlow's coordination service as `MultiWorkerMirroredStrategy`
    does when nothing is configured (the leader, the chief and worker jobs), with
    `timeout` for every task to register."""
    import tensorflow as tf
    from tensorflow.python.distribute.collective_all_reduce_strategy import (
        coordination_config_pb2)
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    spec = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
            for job in ("chief", "worker") if job in spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=jobs, cluster_register_timeout_in_ms=max(1, round(timeout * 1000)))
    # The leader registers itself at once and then waits on, with no timeout, unless
    # every task's registration is one barrier (which the timeout bounds).
    context.context().coordination_service.cluster_register_with_barrier = True


def not_listening(cluster, ranks, seconds=2.0):
    """The `ranks` whose address takes no TCP connection: the tasks not started (or
    not reachable from here)."""
    import socket

    missing = []
    for rank in ranks:
        host, _, port = cluster.addresses[rank].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
                pass
        except (OSError, ValueError):
            missing.append(rank)
    return missing


def strategy():
    """The multi-worker strategy `start` made, or None."""
    return _STARTED[0][1] if _STARTED else None


def current_cluster():
    return _STARTED[0][0] if _STARTED else None


def run_name():
    """The name every worker of this process's cluster holds for the run (`start`)."""
    return _STARTED[0][2] if _STARTED else None


def shard_batches(ds):
    """`ds` with every worker keeping its share of the batches (`AutoShardPolicy.DATA`).

    The default, FILE, finds no files in a pipeline made from tensors and falls back to
    DATA with a warning; naming it keeps the log quiet and the choice explicit.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def failure_message(err, cluster=None):
    """One line for a `fit` a worker's death cut short, naming it from TensorFlow's error.

    The error names this worker's own device first (where the failed op ran), then the
    dead one: the tasks it lists as unhealthy where it has that list, else the tasks it
    mentions, this one left out.
    """
    cluster = cluster or current_cluster()
    text = str(err)
    unhealthy = re.search(r"unhealthy[^:]*:((?:\s*/job:\S+)+)", text)
    found = [f"{kind} {index}" for kind, index in re.findall(
        r"/job:(chief|worker)(?:/replica:\d+)?/task:(\d+)",
        unhealthy.group(1) if unhealthy else text)]
    who = "another worker"
    if cluster is not None:
        dead = [name for name in dict.fromkeys(found)
                if name in cluster.names and name != cluster.names[cluster.rank]]
        if dead:
            who = ", ".join(cluster.describe(cluster.names.index(name)) for name in dead)
    return (f"training stopped: {who} stopped answering ({type(err).__name__}); start the "
            "same command on every worker again (with --backup_dir, training resumes from "
            "the last finished epoch)")


@contextlib.contextmanager
def stop_cleanly():
    """Inside a multi-worker `fit`: a worker that dies (TensorFlow's `UnavailableError`,
    or an op cancelled or timed out for it) becomes a `UserError` naming it."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError, tf.errors.AbortedError) as err:
        if strategy() is None:
            raise
        raise UserError(failure_message(err)) from None


def backup_callback(backup_dir, cluster):
    """Keras' `BackupAndRestore` on `backup_dir`, written by the chief only.

    Keras 3's callback writes from every process; the workers hold the same weights,
    so the chief's copy serves all of them (the folder must be one they all see, as
    the bottleneck cache is) and the others only read it when a run resumes.
    """
    import keras

    class ChiefBackup(keras.callbacks.BackupAndRestore):
        def _save_model(self):
            if cluster is None or cluster.is_chief:
                super()._save_model()

        def on_train_end(self, logs=None):
            if cluster is None or cluster.is_chief:
                super().on_train_end(logs)

    return ChiefBackup(backup_dir)


def resumed_epoch(backup_dir):
    """The epoch a run with `backup_dir` resumes from: the one `BackupAndRestore` noted
    in its training_metadata.json (Keras 3), 0 when there is none to resume."""
    import json
    import os

    try:
        with open(os.path.join(backup_dir, "training_metadata.json"), encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def predict_locally(model, batches):
    """Scores of `model` on `batches`, computed in this process alone: `model.predict`
    under the strategy would wait for the other workers, which have finished."""
    import numpy as np

    return np.concatenate([np.asarray(model(batch, training=False)) for batch in batches])


def _patch_keras():
    """Mend the two places where Keras 3.15's TensorFlow trainer breaks under a
    multi-worker strategy (keras-team/keras#20585), leaving one-worker runs as they are.

    1. Before the first step, `fit` averages the first batch over the workers to learn
       its shapes, and passes the whole (x, y) structure where one tensor is expected
       ("Attempt to convert a value (PerReplica...)"): the shapes of this worker's
       batch are what it needs.
    2. Each step's logs are averaged with `axis=0`, which fails on the scalar metrics
       ("Invalid reduction dimension 0"): they are averaged over the workers as they are.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_kapps_multi_worker", False):
        return
    build = trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce = trainer.reduce_per_replica

    def local(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is None or not trainer._collective_all_reduce_multi_worker(
                self.distribute_strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            first = next(batches)
            break
        return build(self, data_batch=tree.map_structure(
            lambda v: local(v, self.distribute_strategy), first))

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(
                strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    trainer._kapps_multi_worker = True
