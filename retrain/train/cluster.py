"""Which `tf.distribute` strategy a run uses, and the cluster `TF_CONFIG` names.

`TF_CONFIG` is TensorFlow's standard description of a multi-worker job (the one
Kubernetes operators and cloud trainers set): `{"cluster": {"chief": [...], "worker":
["host:port", ...]}, "task": {"type": "worker", "index": 0}}`. It is read and checked
here without importing TensorFlow, so a mistake in it answers before any work, as a
bad flag does (`RetrainConfig.check`).
"""
import json
import os
from dataclasses import dataclass

from kapps.errors import UserError

STRATEGIES = ("none", "mirrored", "multi_worker")
TASK_TYPES = ("chief", "worker")  # the tasks MultiWorkerMirroredStrategy trains on
EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
           '"task": {"type": "worker", "index": 0}}\'')


@dataclass(frozen=True)
class Cluster:
    """The tasks of a multi-worker run, chief first, and which one this process is.

    `rank` numbers the tasks 0..workers-1 (the chief, or worker 0 where no chief is
    named, is 0): it picks each worker's share of the feature pass and names a worker
    in messages.
    """
    addresses: tuple  # ("host:port", ...) by rank
    names: tuple      # ("worker 0", ...) by rank, as TF_CONFIG names them
    rank: int

    @property
    def workers(self):
        return len(self.addresses)

    @property
    def is_chief(self):
        return self.rank == 0

    def describe(self, rank=None):
        """`worker 1 (10.0.0.2:2222)`: a task as a person finds it in TF_CONFIG."""
        rank = self.rank if rank is None else rank
        return f"{self.names[rank]} ({self.addresses[rank]})"


def strategy_name(config, environ=None):
    """`"none"`, `"mirrored"` or `"multi_worker"` for `config.distribute`.

    Unset (`None`): multi_worker when `TF_CONFIG` is set, else none; `True` (the flag
    alone) or `"auto"`: multi_worker when `TF_CONFIG` is set, else mirrored; `False` is
    none. `UserError` for any other value.
    """
    environ = os.environ if environ is None else environ
    value = config.distribute
    if value is None or value is True or value == "auto":
        if environ.get("TF_CONFIG"):
            return "multi_worker"
        return "none" if value is None else "mirrored"
    if value is False:
        return "none"
    name = str(value).strip().lower().replace("-", "_")
    if name not in STRATEGIES:
        raise UserError(f"--distribute must be one of {', '.join(STRATEGIES)} (or the flag "
                        f"alone: multi_worker with TF_CONFIG set, else mirrored). "
                        f"Received: {value!r}")
    return name


def uses_strategy(config):
    """Whether training runs under a `tf.distribute` strategy (batches are then kept whole)."""
    return strategy_name(config) != "none"


def read_cluster(environ=None):
    """The `Cluster` of `TF_CONFIG`; `UserError` naming the fix when it is missing or wrong."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if not text:
        raise UserError(f"--distribute multi_worker needs the cluster in TF_CONFIG, e.g. "
                        f"{EXAMPLE}")
    try:
        spec = json.loads(text)
    except ValueError as err:
        raise UserError(f"TF_CONFIG is not valid JSON ({err}); set it like {EXAMPLE}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise UserError(f"TF_CONFIG has no \"cluster\" object; set it like {EXAMPLE}")
    cluster, task = spec["cluster"], spec.get("task")
    unknown = sorted(set(cluster) - set(TASK_TYPES))
    if unknown:
        raise UserError(f"TF_CONFIG's cluster names {', '.join(map(repr, unknown))}: "
                        "MultiWorkerMirroredStrategy trains on \"chief\" and \"worker\" tasks "
                        "only (no parameter servers or evaluators); remove them")
    for kind in TASK_TYPES:
        hosts = cluster.get(kind, [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise UserError(f"TF_CONFIG's cluster \"{kind}\" must be a list of \"host:port\" "
                            f"strings. Received: {hosts!r}")
    if len(cluster.get("chief", [])) > 1:
        raise UserError(f"TF_CONFIG names {len(cluster['chief'])} chiefs; name one at most "
                        "(without one, worker 0 is the chief)")
    tasks = [(kind, i, host) for kind in TASK_TYPES
             for i, host in enumerate(cluster.get(kind, []))]
    if not tasks:
        raise UserError(f"TF_CONFIG's cluster names no worker; set it like {EXAMPLE}")
    if len({host for _, _, host in tasks}) < len(tasks):
        raise UserError("TF_CONFIG's cluster names an address twice: every task needs its "
                        "own host:port")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserError("TF_CONFIG has no \"task\" saying which task this process is: add "
                        "e.g. \"task\": {\"type\": \"worker\", \"index\": 0}, a different one "
                        "on each machine")
    me = (task["type"], task["index"])
    ranks = {(kind, i): rank for rank, (kind, i, _) in enumerate(tasks)}
    if me not in ranks:
        raise UserError(f"TF_CONFIG's task {json.dumps(task)} is not in its cluster "
                        f"({', '.join(f'{k} {i}' for k, i, _ in tasks)}); the index counts "
                        "from 0 within its type")
    return Cluster(tuple(host for _, _, host in tasks),
                   tuple(f"{kind} {i}" for kind, i, _ in tasks), ranks[me])


def cluster_for(config, environ=None):
    """The `Cluster` of a multi-worker run, else None (checks TF_CONFIG where it is used)."""
    if strategy_name(config, environ) != "multi_worker":
        return None
    return read_cluster(environ)
