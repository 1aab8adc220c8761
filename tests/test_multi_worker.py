"""Retraining across workers with MultiWorkerMirroredStrategy: TF_CONFIG's checks, the
shared feature pass, two workers on 127.0.0.1 against one, a worker that dies, and a
run resumed with --backup_dir.

The end-to-end tests share three processes started at once (`cluster_runs`): a
one-worker cluster (the reference) and a two-worker cluster, each retraining the same
tiny folder twice, a Keras head on the frozen LeNet-5 base and LeNet-5 fine-tuned whole
from scratch (with distortions), with the same seed and the default class weights. The
two-worker chief's exported models must equal the reference's within 1e-5 (they differ
by float rounding of the summed gradients, about 1e-8 measured), and the other worker
must write no model folder. Then worker 1 is killed in a third run and worker 0 must stop
with one line naming it, while the reference is killed in a run with --backup_dir and
resumed in a new process, which must end as the same run not killed.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import imagegen
import numpy as np
import pytest

from kapps.errors import UserError
from retrain.train.cluster import Cluster, read_cluster, strategy_name
from retrain.config import RetrainConfig
from retrain.train.feature_shares import owner, wait_for_shares
from retrain.train.multi_worker import failure_message

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def tf_config(workers, index, chief=None):
    cluster = {"worker": workers} if chief is None else {"chief": [chief], "worker": workers}
    task = {"type": "worker", "index": index} if index is not None else {"type": "chief",
                                                                          "index": 0}
    return json.dumps({"cluster": cluster, "task": task})


def test_tf_config_names_this_task_and_the_chief_first():
    cluster = read_cluster({"TF_CONFIG": tf_config(["h1:1", "h2:2"], 1, chief="h0:0")})
    assert cluster.addresses == ("h0:0", "h1:1", "h2:2") and cluster.rank == 2
    assert not cluster.is_chief and cluster.describe(0) == "chief 0 (h0:0)"
    alone = read_cluster({"TF_CONFIG": tf_config(["h1:1", "h2:2"], 0)})
    assert alone.is_chief and alone.workers == 2


@pytest.mark.parametrize("text, words", [
    (None, "needs the cluster in TF_CONFIG"),
    ("{cluster", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": ["h:1"], "ps": ["p:2"]}, "task": {"type": "worker", "index": 0}}',
     "'ps'"),
    ('{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", "index": 0}}',
     "twice"),
    ('{"cluster": {"worker": ["h1"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["h:1"]}}', 'no "task"'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}',
     "not in its cluster"),
])
def test_a_bad_tf_config_is_one_line_naming_the_fix(text, words):
    with pytest.raises(UserError, match=None) as err:
        read_cluster({} if text is None else {"TF_CONFIG": text})
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("distribute, env, expected", [
    (None, {}, "none"), (None, {"TF_CONFIG": "{}"}, "multi_worker"),
    ("auto", {}, "mirrored"), (True, {"TF_CONFIG": "{}"}, "multi_worker"),
    (False, {"TF_CONFIG": "{}"}, "none"), ("mirrored", {"TF_CONFIG": "{}"}, "mirrored"),
    ("Multi-Worker", {}, "multi_worker"), ("none", {}, "none"),
])
def test_distribute_names_the_strategy_and_tf_config_alone_asks_for_workers(distribute, env,
                                                                           expected):
    assert strategy_name(RetrainConfig(distribute=distribute), env) == expected


def test_the_workers_split_the_pictures_about_evenly_and_the_same_everywhere():
    class Record:
        def __init__(self, rel_path):
            self.rel_path = rel_path

    records = [Record(f"cls{i % 3}/img{i}.jpg") for i in range(600)]
    counts = np.bincount([owner(r, 3) for r in records], minlength=3)
    assert counts.sum() == 600 and counts.min() > 150
    assert [owner(r, 3) for r in records] == [owner(r, 3) for r in records]


def test_waiting_for_shares_names_the_worker_that_never_finished(tmp_path):
    folder, cache = tmp_path / "shares", tmp_path / "cache"
    folder.mkdir()
    cache.mkdir()
    (folder / "rank-0.json").write_text('{"run": "now", "left_out": {}}')
    # Worker 1's marker of an earlier run (same pictures, same cluster) does not count.
    (folder / "rank-1.json").write_text('{"run": "before", "left_out": {}}')
    cluster = Cluster(("a:1", "b:2"), ("worker 0", "worker 1"), 0)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(UserError) as err:
        wait_for_shares(str(folder), str(cache), cluster, 30, verbose=0, run="now",
                        clock=lambda: now[0], sleep=sleep)
    assert "worker 1 (b:2) did not finish its share" in str(err.value)
    assert "--worker_timeout" in str(err.value) and 30 < now[0] < 32
    (folder / "rank-1.json").write_text('{"run": "now", "left_out": {"abc": "empty file"}}')
    markers = wait_for_shares(str(folder), str(cache), cluster, 30, verbose=0, run="now")
    assert markers[1]["left_out"] == {"abc": "empty file"}


def test_a_slow_worker_that_beats_is_waited_for_past_the_timeout(tmp_path):
    """Worker 1 computes for 100 s, longer than --worker_timeout (30 s), adding no cache
    shard: its heartbeat every 5 s keeps the others waiting; then its marker arrives."""
    from retrain.train.feature_shares import heartbeat

    folder, cache = tmp_path / "shares", tmp_path / "cache"
    cache.mkdir()
    with heartbeat(str(folder), 0, "now", every=60):
        assert json.loads((folder / "rank-0.alive.json").read_text())["run"] == "now"
    (folder / "rank-0.json").write_text('{"run": "now", "left_out": {}}')
    cluster = Cluster(("a:1", "b:2"), ("worker 0", "worker 1"), 0)
    now = [0.0]

    def sleep(seconds):  # worker 1 beats every 5 s, and is done at 100 s
        now[0] += seconds
        if now[0] % 5 < seconds:
            (folder / "rank-1.alive.json").write_text(json.dumps({"run": "now",
                                                                  "beat": now[0]}))
        if now[0] >= 100:
            (folder / "rank-1.json").write_text('{"run": "now", "left_out": {}}')

    markers = wait_for_shares(str(folder), str(cache), cluster, 30, verbose=0, run="now",
                              clock=lambda: now[0], sleep=sleep)
    assert len(markers) == 2 and now[0] >= 100


class UnavailableError(Exception):
    """Stands for TensorFlow's: `failure_message` reads only its name and text."""


# What worker 0 got when worker 1 was killed (TensorFlow 2.21): its own device comes first.
HEARTBEATS = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker"
              "/replica:0/task:0/device:CPU:0}} Collective ops is aborted by: Error reported from "
              "/job:worker/task:1: The following tasks are unhealthy (stopped sending "
              "heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.")
RECV = ("Additional GRPC error information from remote target /job:worker/replica:0/task:1 "
        "while calling /tensorflow.WorkerService/RecvBuf: Connection reset by peer")


@pytest.mark.parametrize("text, named", [
    (HEARTBEATS, "worker 1 (b:2)"), (RECV, "worker 1 (b:2)"),
    ("/job:worker/replica:0/task:0/device:CPU:0 failed", "another worker"),
])
def test_a_dead_worker_is_named_not_the_one_that_reports_it(text, named):
    cluster = Cluster(("a:1", "b:2"), ("worker 0", "worker 1"), 0)
    message = failure_message(UnavailableError(text), cluster)
    assert message.startswith(f"training stopped: {named} stopped answering "
                              "(UnavailableError)") and "\n" not in message


RUN = textwrap.dedent("""
    import json, os, signal, sys, time
    from kapps.errors import UserError
    from retrain import retrain
    from retrain.train import fit
    image_dir, weights, out, cache, mode = sys.argv[1:6]
    common = dict(image_dir=image_dir, architecture="lenet5", image_size=32,
                  train_batch_size=8, learning_rate=0.01, optimizer="sgd", dropout=0.0,
                  testing_percentage=20, validation_percentage=20, bottleneck_dir=cache,
                  verbose=0)
    # Without validation the last epoch is kept: what a resumed run must reproduce.
    fine = dict(common, weights="none", fine_tune="all", epochs=3, validation_percentage=0,
                flip_left_right=True, random_crop=10)

    def report(name, **fields):
        print("RUN", json.dumps(dict(fields, name=name)), flush=True)

    from retrain.data import inputs
    decoded, load = [], inputs._load
    inputs._load = lambda path, *args: decoded.append(path) or load(path, *args)

    def reads(result):  # decodes of training and validation pictures in this process
        paths = {r.path for split in ("train", "validation")
                 for r in result.prepared.records(split)}
        return sum(1 for p in decoded if (p.item() if hasattr(p, "item") else p).decode()
                   in paths)

    def die_in_epoch(epoch):
        began = fit.KeepBest.on_epoch_begin
        def begin(self, index, logs=None):
            began(self, index, logs)
            if index == epoch:
                self.on_train_batch_end = lambda *args, **kwargs: os.kill(os.getpid(),
                                                                          signal.SIGKILL)
        fit.KeepBest.on_epoch_begin = begin

    backup = cache + "_backup"  # one every worker of a cluster sees
    if mode != "resume":
        runs = {"frozen": dict(common, weights=weights, head_fit="keras", epochs=3),
                "fine": dict(common, weights="none", fine_tune="all", epochs=2,
                             flip_left_right=True, random_crop=10,
                             summaries_dir=os.path.join(out, "logs"))}
        for name, settings in runs.items():
            # Default flags otherwise (class weights on): a step must see the same batch,
            # with the same distortions, on one worker as on two.
            decoded.clear()
            result = retrain(output_dir=os.path.join(out, name), **settings)
            report(name, computed=result.prepared.computed, output_dir=result.output_dir,
                   reads=reads(result),
                   val=result.history["val_accuracy"], val_loss=result.history["val_loss"],
                   n_val=len(result.prepared.labels["validation"]))
    if mode == "reference":  # a run, then the same one killed in its third epoch
        retrain(output_dir=os.path.join(out, "whole"), **fine)
        die_in_epoch(2)
    if mode in ("reference", "resume"):  # ... and resumed in a new process
        result = retrain(output_dir=os.path.join(out, "resumed"), backup_dir=backup, **fine)
        report("resumed", epochs=len(result.history["loss"]))
    if mode.startswith("worker"):  # worker 1 dies in the third epoch (backed up: resume)
        if mode == "worker1":
            die_in_epoch(2)
        started = time.time()
        try:
            retrain(output_dir=os.path.join(out, "dead"), backup_dir=backup, **fine)
            message = None
        except UserError as err:
            message = str(err)
        report("dead", message=message, seconds=time.time() - started)
""")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(script, args, config):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=config,
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(script)] + args, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def runs_of(proc, name, returncode=0):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == returncode, f"{name}:\n{err[-3000:]}"
    return {run["name"]: run for run in
            (json.loads(line[4:]) for line in out.splitlines() if line.startswith("RUN "))}


def exported_weights(folder):
    import keras

    model = keras.saving.load_model(os.path.join(folder, "model.keras"), safe_mode=True)
    return model.get_weights()


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory, base_weights):
    """Start a one-worker cluster and a two-worker one on 127.0.0.1, the three processes
    at once, and wait for them: ({process: {run: what it printed}}, their folder, the two
    workers' addresses).

    All run `RUN`'s frozen and fine runs. Then the one worker runs a fine-tuning, then
    the same with --backup_dir, dies by SIGKILL in its third epoch, and a new process
    resumes it; the two workers run that same fine-tuning with --backup_dir, worker 1
    dies by SIGKILL in the third epoch, and two new processes resume it.
    """
    root = tmp_path_factory.mktemp("clusters")
    images = imagegen.make_class_folder(root / "colours", {"red": 14, "green": 14,
                                                           "blue": 14})
    script = root / "run.py"
    script.write_text(RUN, encoding="utf-8")
    one, first, second, *again = free_ports(5)
    workers = [f"127.0.0.1:{first}", f"127.0.0.1:{second}"]

    def reference(mode):
        return start(script, [str(images), base_weights, str(root / "one"),
                              str(root / "cache_one"), mode], tf_config([f"127.0.0.1:{one}"], 0))

    procs = {"one": reference("reference")}
    for i in (0, 1):
        procs[f"worker{i}"] = start(script, [str(images), base_weights,
                                             str(root / f"worker{i}"),
                                             str(root / "shared_cache"), f"worker{i}"],
                                    tf_config(workers, i))
    try:
        runs = {"one": runs_of(procs["one"], "one", -signal.SIGKILL)}
        procs["resume"] = reference("resume")
        runs.update({name: runs_of(procs[name], name, -signal.SIGKILL if name == "worker1"
                                   else 0) for name in ("worker0", "worker1", "resume")})
        for i in (0, 1):  # the cluster again (new ports: the old ones may still linger)
            procs[f"again{i}"] = start(script, [str(images), base_weights,
                                                str(root / f"worker{i}"),
                                                str(root / "shared_cache"), "resume"],
                                       tf_config([f"127.0.0.1:{p}" for p in again], i))
        runs.update({f"again{i}": runs_of(procs[f"again{i}"], f"again{i}") for i in (0, 1)})
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return runs, root, workers


def test_two_workers_export_what_one_worker_does(cluster_runs):
    runs, root, _ = cluster_runs
    total = runs["one"]["frozen"]["computed"]
    shares = [runs[f"worker{i}"]["frozen"]["computed"] for i in (0, 1)]
    assert sum(shares) == total and min(shares) > 0  # each computed its share, none twice
    assert runs["worker1"]["frozen"]["output_dir"] is None
    assert not (root / "worker1").exists()  # the other worker writes nothing: no model
    assert (root / "worker0" / "logs" / "train").is_dir()  # folder, no TensorBoard logs
    for name in ("frozen", "fine"):
        chief, reference = runs["worker0"][name], runs["one"][name]
        # Every validation picture counted once each epoch (an unfinished in-memory
        # cache read by two iterators once gave 22 of 26 and another kept epoch).
        assert chief["val"] == pytest.approx(reference["val"])
        assert chief["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-5)
        # Weighted metrics: the padding of the last validation batch is not counted.
        assert all(abs(v * chief["n_val"] - round(v * chief["n_val"])) < 1e-4
                   for v in chief["val"])
        mine = exported_weights(root / "worker0" / name)
        theirs = exported_weights(root / "one" / name)
        assert len(mine) == len(theirs)
        assert max(float(np.abs(a - b).max()) for a, b in zip(mine, theirs)) < 1e-5, name
    # Fine-tuning: each worker decoded its rows of each batch, not every picture.
    reads = [runs[f"worker{i}"]["fine"]["reads"] for i in (0, 1)]
    print("pictures decoded in fine-tuning: one worker", runs["one"]["fine"]["reads"],
          "two workers", reads)
    assert max(reads) < 0.7 * runs["one"]["fine"]["reads"]


def test_a_worker_that_dies_stops_the_others_with_one_line_naming_it(cluster_runs):
    runs, root, workers = cluster_runs
    dead = runs["worker0"]["dead"]
    assert dead["message"] is not None, "worker 0 trained on after worker 1 died"
    assert dead["message"].startswith(f"training stopped: worker 1 ({workers[1]}) stopped "
                                      "answering"), dead["message"]
    assert "\n" not in dead["message"] and "--backup_dir" in dead["message"]
    assert dead["seconds"] < 60  # an epoch, then seconds (TensorFlow's heartbeats)
    assert not (root / "worker0" / "dead").exists()


def test_a_run_killed_and_resumed_with_backup_dir_ends_as_one_not_killed(cluster_runs):
    runs, root, _ = cluster_runs
    assert runs["resume"]["resumed"]["epochs"] == 1  # epochs 1 and 2 came from the backup
    metrics = json.loads((root / "one" / "resumed" / "metrics.json").read_text())
    assert (metrics["resumed_after_epoch"], metrics["epochs_run"]) == (2, 1)
    assert len(metrics["history"]["loss"]) == 1  # best_epoch counts within these
    assert not (root / "cache_one_backup").exists()  # deleted when training ended
    resumed = exported_weights(root / "one" / "resumed")
    whole = exported_weights(root / "one" / "whole")
    assert max(float(np.abs(a - b).max()) for a, b in zip(resumed, whole)) < 1e-5


def test_two_workers_killed_and_resumed_with_backup_dir_end_as_one_worker_not_killed(
        cluster_runs):
    runs, root, _ = cluster_runs
    assert [runs[f"again{i}"]["resumed"]["epochs"] for i in (0, 1)] == [1, 1]
    metrics = json.loads((root / "worker0" / "resumed" / "metrics.json").read_text())
    assert (metrics["resumed_after_epoch"], metrics["epochs_run"]) == (2, 1)
    assert not (root / "worker1" / "resumed").exists()
    assert not (root / "shared_cache_backup").exists()  # the chief deleted it at the end
    resumed = exported_weights(root / "worker0" / "resumed")
    whole = exported_weights(root / "one" / "whole")
    assert max(float(np.abs(a - b).max()) for a, b in zip(resumed, whole)) < 1e-5


def test_a_resumed_run_counts_its_kept_epoch_within_the_epochs_it_ran():
    from retrain.train.fit import kept_epoch

    assert kept_epoch([2, 3, 4], 4) == (2, 2)  # resumed after 2 epochs, the last kept
    assert kept_epoch([0, 1, 2], 1) == (0, 1)  # not resumed: as before
    assert kept_epoch([2], None) == (2, None) and kept_epoch([], None) == (0, None)


def test_a_worker_that_never_starts_or_a_port_in_use_is_one_line_within_worker_timeout(
        tmp_path):
    """Worker 1 started alone waits --worker_timeout seconds for worker 0, then names it;
    a worker whose own address is taken says so (TensorFlow would wait an hour, or
    print a gRPC trace)."""
    images = imagegen.make_class_folder(tmp_path / "pics", {"a": 4, "b": 4}, size=32)
    free, taken = free_ports(2)
    holder = socket.socket()
    holder.bind(("127.0.0.1", taken))
    holder.listen()

    def alone(addresses, index):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=tf_config(addresses, index),
                   PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
        return subprocess.Popen(
            [sys.executable, "-m", "kapps.cli", "retrain", "--image_dir", str(images),
             "--architecture", "lenet5", "--image_size", "32", "--weights", "none",
             "--output_dir", str(tmp_path / f"out{index}"), "--worker_timeout", "3"],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    try:
        procs = [alone([f"127.0.0.1:{free}", "127.0.0.1:1"], 1),
                 alone([f"127.0.0.1:{taken}", "127.0.0.1:1"], 0)]
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        holder.close()
    (out, err), (_, busy) = results
    assert [proc.returncode for proc in procs] == [2, 2]
    assert f"waiting for worker 0 (127.0.0.1:{free}) to join (up to 3 s" in out
    assert f"\nerror: worker 0 (127.0.0.1:{free}) did not join the cluster within 3 s" in err
    assert f"\nerror: worker 0 (127.0.0.1:{taken}) could not listen on 127.0.0.1:{taken}" \
        in busy
    assert not (tmp_path / "out0").exists() and not (tmp_path / "out1").exists()
