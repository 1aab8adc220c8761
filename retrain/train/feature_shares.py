"""The feature pass of a multi-worker run, shared out: each worker runs the frozen base
over its share of the pictures, into the bottleneck cache they all see.

A picture's worker is its name's hash (the split's, `retrain.data.split.name_hash`) modulo
the number of workers: stable, the same on every machine, and about even. Each worker
writes its features as usual (one atomic shard per chunk), then a small marker file
saying it is done and which of its pictures could not be read; every worker waits for
all markers before training, so all of them train on the same pictures.

While it works, each worker also writes a heartbeat file every few seconds: a worker
whose heartbeat, cache shards and marker all stand still for `--worker_timeout`
seconds stops the wait with a line naming it (a slow worker on a big base is not
taken for a dead one). Markers and heartbeats carry the run's name, which the workers
agreed on at start (`multi_worker.run_name`): an earlier run's files never count.
"""
import contextlib
import hashlib
import json
import os
import threading
import time

from kapps.errors import UserError
from retrain.common import atomic
from retrain.train import bottlenecks
from retrain.data.split import name_hash

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 5.0


def owner(record, workers):
    """The rank of the worker that computes `record`'s features."""
    return name_hash(record.rel_path) % workers


def share_features(extractor, cache, requests, size, config, cluster, verbose=1, run=None):
    """Compute this worker's share of `requests` (as `bottlenecks.cached_features` takes
    them) into `cache`, then wait for every other worker's share.

    Returns (features computed here, {content digest: reason} of the pictures any
    worker could not read): the caller leaves those out everywhere, so the workers'
    splits stay the same. `run` is the run's name every worker holds (else this
    worker's name, which only a one-worker cluster can do with).
    """
    mine = {name: ([r for r in records if owner(r, cluster.workers) == cluster.rank], variants)
            for name, (records, variants) in requests.items()}
    if verbose:
        count = sum(len(records) for records, _ in mine.values())
        print(f"Feature pass shared by {cluster.workers} workers: {cluster.describe()} "
              f"computes its share, {count} pictures")
    folder = os.path.join(cache.folder, "shares", _run_key(requests, cluster.workers))
    run = run or cluster.describe()
    with heartbeat(folder, cluster.rank, run):
        _, computed, left_out = bottlenecks.cached_features(extractor, cache, mine, size,
                                                            config, verbose=verbose)
        digests = {r.path: r.digest for records, _ in requests.values() for r in records}
        atomic.write_json(os.path.join(folder, f"rank-{cluster.rank}.json"), {
            "task": cluster.describe(), "run": run,
            "left_out": {digests[path]: reason for path, reason in left_out.items()}})
        markers = wait_for_shares(folder, cache.folder, cluster, config.worker_timeout,
                                  verbose, run=run)
    broken = {}
    for marker in markers:
        broken.update(marker["left_out"])
    cache.refresh()
    return computed, broken


@contextlib.contextmanager
def heartbeat(folder, rank, run, every=HEARTBEAT_SECONDS):
    """Write `rank-N.alive.json` in `folder` now and every `every` seconds until the
    block ends: the others' sign that this worker is still at work."""
    stop = threading.Event()
    path = os.path.join(folder, f"rank-{rank}.alive.json")

    def write(count):
        try:
            atomic.write_json(path, {"run": run, "beat": count})
        except OSError:
            pass  # a full or unmounted disk shows in the shards' writes

    def beat():
        count = 1
        while not stop.wait(every):
            write(count)
            count += 1

    os.makedirs(folder, exist_ok=True)
    write(0)
    thread = threading.Thread(target=beat, name="kapps-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _run_key(requests, workers):
    """The same on every worker of one run: the entries wanted and the cluster's size."""
    keys = sorted(bottlenecks.entry_key(r.digest, v) for records, variants in requests.values()
                  for r in records for v in variants)
    return hashlib.sha1(json.dumps([workers, keys]).encode()).hexdigest()[:16]


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wait_for_shares(folder, cache_folder, cluster, timeout, verbose=1, run=None,
                    clock=time.monotonic, sleep=time.sleep):
    """The markers of every rank in `folder` written by run `run`, once all are there;
    `UserError` naming the workers still missing when neither a marker, a heartbeat of
    `run` nor a cache shard has changed for `timeout` seconds."""
    said, last_change, seen = False, clock(), None
    while True:
        markers, beats = {}, []
        for rank in range(cluster.workers):
            marker = _read(os.path.join(folder, f"rank-{rank}.json"))
            if isinstance(marker, dict) and marker.get("run") == run:
                markers[rank] = marker
                continue
            alive = _read(os.path.join(folder, f"rank-{rank}.alive.json"))
            if isinstance(alive, dict) and alive.get("run") == run:
                beats.append((rank, alive.get("beat")))
        if len(markers) == cluster.workers:
            return [markers[rank] for rank in range(cluster.workers)]
        state = (len(markers), tuple(beats), len(os.listdir(cache_folder)))
        if state != seen:
            seen, last_change = state, clock()
        missing = [cluster.describe(rank) for rank in range(cluster.workers)
                   if rank not in markers]
        if clock() - last_change > timeout:
            raise UserError(
                f"{', '.join(missing)} did not finish {'its' if len(missing) == 1 else 'their'} "
                f"share of the feature pass: no heartbeat and nothing new in {cache_folder} "
                f"for {timeout:g} s. Check that every worker runs the same command on the "
                "same pictures with the same shared --bottleneck_dir, or raise "
                "--worker_timeout")
        if verbose and not said:
            print(f"Waiting for the features of {', '.join(missing)}", flush=True)
            said = True
        sleep(POLL_SECONDS)
