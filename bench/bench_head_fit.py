"""Benchmark: fitting a head on cached features, one batch per compiled call or several.

    python bench/bench_head_fit.py [--pictures 72 1400 20000] [--steps 1 64] [--repeats 2]

`retrain.train.fit.train` with `head_fit="keras"` (bench/bench_linear_probe.py measures the
default L-BFGS fit) on random 1,280-wide features (MobileNetV2's) of 10 classes, split
80/10/10, 10 epochs, batches of 32, softmax head: what `kapps retrain` and every tuning
trial do once the bottleneck cache is filled. Each fit runs in a fresh process, as the
first fit of a command does (Keras traces the train and validation steps there), and
only `train` is timed. Runs alternate between the settings of `--steps` (Keras'
`steps_per_execution`, replacing `retrain.train.fit.head_steps_per_execution`; 64 means
`min(64, batches per epoch)`, the rule for long fits). Prints one markdown row per size, and
the last epoch's loss per setting, which must agree.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_CHILD = r"""
import json, sys, time
import numpy as np
from retrain.train import fit
from retrain.config import RetrainConfig
from retrain.train.prepare import PreparedData

n, steps, epochs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fit.head_steps_per_execution = lambda epoch_steps, epochs: min(steps, epoch_steps)
from retrain.train.model import build_head

class Folder:
    classes = [str(c) for c in range(10)]

rng = np.random.default_rng(0)
config = RetrainConfig(image_dir="random", epochs=epochs, verbose=0, head_fit="keras",
                       learning_rate=1e-3)
prepared = PreparedData(config, Folder(), None)
for split, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
    m = max(1, int(n * share))
    prepared.features[split] = rng.normal(size=(m, 1, 1280)).astype("float32")
    prepared.labels[split] = rng.integers(0, 10, m).astype("int32")
fit.seed_everything(config)
model = build_head(1280, 10, config.dropout)
start = time.perf_counter()
history = fit.train(model, prepared, config)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "loss": float(history.history["loss"][-1])}))
"""


def fit_once(n, steps, epochs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(steps), str(epochs)],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, nargs="+", default=[72, 1400, 20000])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}")
    print("| pictures | " + " | ".join(f"steps_per_execution {s}: seconds (runs)"
                                        for s in args.steps) + " | last loss |")
    print("|---:|" + "---|" * (len(args.steps) + 1))
    for n in args.pictures:
        runs = {s: [] for s in args.steps}
        for _ in range(args.repeats):
            for s in args.steps:
                runs[s].append(fit_once(n, s, args.epochs))
        cells = [f"{min(r['seconds'] for r in runs[s]):.2f} "
                 f"({', '.join('%.2f' % r['seconds'] for r in runs[s])})" for s in args.steps]
        losses = " / ".join(f"{runs[s][-1]['loss']:.6f}" for s in args.steps)
        print(f"| {n:,} | " + " | ".join(cells) + f" | {losses} |", flush=True)


if __name__ == "__main__":
    main()
