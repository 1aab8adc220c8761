"""Benchmark: `kapps retrain` on two workers (MultiWorkerMirroredStrategy) against one.

    python bench/bench_multiworker.py [--per_class 60] [--epochs 3]

Both runs are clusters on 127.0.0.1 started by `TF_CONFIG` (one worker; two workers as
two processes) on the same generated folder (3 classes of 48 px noisy colours), each
doing a frozen LeNet-5 base with a Keras head (`--head_fit keras`) and then LeNet-5
fine-tuned whole from scratch, with the same seed and otherwise default flags (class
weights on). Both workers share this machine's cores, so this checks correctness and
measures the cost of the strategy, not a speed-up: it prints the wall time of each
cluster, the features each worker computed, and the largest difference between the
exported models' weights. Writes under bench/out/multiworker/.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

CHILD = r"""
import json, os, sys, time
started = time.time()
from retrain import retrain
image_dir, weights, out, cache, epochs = sys.argv[1:6]
for name, settings in (("frozen", dict(weights=weights, head_fit="keras")),
                       ("fine", dict(weights="none", fine_tune="all"))):
    t = time.time()
    result = retrain(image_dir=image_dir, architecture="lenet5", image_size=32, seed=1,
                     epochs=int(epochs), train_batch_size=16, learning_rate=0.01,
                     optimizer="sgd", dropout=0.0, verbose=0,
                     output_dir=os.path.join(out, name), bottleneck_dir=cache, **settings)
    print("RUN", json.dumps({"name": name, "seconds": time.time() - t,
                             "computed": result.prepared.computed}), flush=True)
print("TOTAL", time.time() - started, flush=True)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster(workers, args, epochs, out):
    """Start `workers` processes of one cluster; (wall seconds, [stdout per worker])."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
    procs = []
    started = time.time()
    for index in range(workers):
        config = json.dumps({"cluster": {"worker": addresses},
                             "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CONFIG=config, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CHILD] + args + [os.path.join(out, f"w{index}"),
                                                    os.path.join(out, "cache"), str(epochs)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=1800)
        if proc.returncode:
            sys.exit(stderr[-3000:])
        outputs.append(stdout)
    return time.time() - started, outputs


def runs(stdout):
    return {r["name"]: r for r in (json.loads(line[4:]) for line in stdout.splitlines()
                                   if line.startswith("RUN "))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import imagegen
    import keras
    import numpy as np

    import kapps

    root = os.path.join(HERE, "out", "multiworker")
    shutil.rmtree(root, ignore_errors=True)
    images = imagegen.make_class_folder(os.path.join(root, "images"), {
        c: args.per_class for c in ("red", "green", "blue")}, size=48, noise=40)
    weights = os.path.join(root, "lenet5_notop.weights.h5")
    keras.utils.set_random_seed(1)
    kapps.create_model("lenet5", include_top=False, input_shape=(32, 32, 3)).save_weights(weights)
    common = [str(images), weights]
    results = {}
    for workers in (1, 2):
        out = os.path.join(root, f"{workers}_workers")
        seconds, outputs = cluster(workers, common, args.epochs, out)
        results[workers] = (seconds, [runs(o) for o in outputs], out)
    print(f"{3 * args.per_class} pictures, {args.epochs} epochs, 2 CPU cores shared by all "
          "workers (correctness and overhead, not speed-up)\n")
    print("| workers | wall s (both runs, with start-up) | frozen-base run s | fine-tune run s "
          "| features computed per worker |")
    print("|---|---|---|---|---|")
    for workers, (seconds, per_worker, _) in results.items():
        chief = per_worker[0]
        print(f"| {workers} | {seconds:.1f} | {chief['frozen']['seconds']:.1f} | "
              f"{chief['fine']['seconds']:.1f} | "
              f"{', '.join(str(w['frozen']['computed']) for w in per_worker)} |")
    for name in ("frozen", "fine"):
        a, b = (keras.saving.load_model(os.path.join(results[w][2], "w0", name, "model.keras"))
                for w in (1, 2))
        diff = max(float(np.abs(x - y).max()) for x, y in zip(a.get_weights(), b.get_weights()))
        print(f"\n{name}: largest weight difference, 2 workers against 1: {diff:.2g}")
    print(f"\nworker 1 wrote a model folder: {os.path.exists(os.path.join(results[2][2], 'w1'))}")


if __name__ == "__main__":
    main()
