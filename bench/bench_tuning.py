"""Benchmark: a head search's cost per trial, and memory across trials.

    python bench/bench_tuning.py [--trials 20] [--out bench/out/tuning]

Pictures: scikit-learn's 1,797 digits (`retrain.demo.write_digits_folder`). The
frozen base is LeNet-5 with its initial weights saved to a file (offline, and the
same base in every run), so trials train heads on cached bottleneck features.

The same random search (same seed, same trials) runs twice, side by side:
- in one process (`trials_per_process=None`): keras-tuner clears the Keras session
  between trials, yet TensorFlow keeps a few MiB per trained model;
- in fresh processes of `--per_process` trials each (the default of `kapps tune`).

After each trial the process that ran it records its resident memory (RSS) and its
proportional share (PSS: shared library pages divided among the processes that map
them). In the second mode the parent waits with TensorFlow loaded; its PSS is added
for the search's total. The bottleneck cache is filled before both, so the trials,
not the preparation, are compared. Also timed: the same settings as separate
`kapps retrain` commands, which is what a hand-made loop costs.

Outputs go under `--out` (git-ignored). Run by hand; not a test. Timings depend on
what else the machine runs.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import measure  # noqa: E402
from tuning import RetrainHyperModel  # noqa: E402


def memory_mb(pid="self"):
    """(RSS, PSS) of a process in MiB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Pss"]


class Measured(RetrainHyperModel):
    """Appends (process id, trial number, RSS, PSS) to `self.log` after each trial's fit."""

    log = None

    def fit(self, hp, model, *a, **k):
        history = super().fit(hp, model, *a, **k)
        with open(self.log, "a") as f:
            f.write(json.dumps([os.getpid(), self.trial_number, *memory_mb()]) + "\n")
        return history


def run_search(images, settings, out, name, trials, per_process):
    import bench_tuning  # not __main__: the trial processes import the class from here
    import tuning
    from tuning.search import base_config

    log = os.path.join(out, f"{name}.jsonl")
    hypermodel = bench_tuning.Measured(base_config(images, settings),
                                       tuning.load_space(None, "random"))
    hypermodel.log = log
    start = time.perf_counter()
    _, rows = tuning.search(images, "random", max_trials=trials, hypermodel=hypermodel,
                            directory=os.path.join(out, "runs"), project_name=name,
                            trials_per_process=per_process, **settings)
    total = time.perf_counter() - start
    parent = memory_mb()
    with open(log) as f:
        samples = [json.loads(line) for line in f]
    return {"seconds": total, "rows": rows, "samples": samples, "parent": parent}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--per_process", type=int, default=10)
    p.add_argument("--separate", type=int, default=3,
                   help="how many separate `kapps retrain` commands to time")
    p.add_argument("--out", default=os.path.join(HERE, "out", "tuning"))
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    import kapps
    from retrain.demo import write_digits_folder

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    images = write_digits_folder(os.path.join(args.out, "digits"))
    weights = os.path.join(args.out, "lenet5_notop.weights.h5")
    keras.utils.set_random_seed(0)
    kapps.create_model("lenet5", include_top=False, input_shape=(32, 32, 3)).save_weights(weights)
    settings = dict(architecture="lenet5", weights=weights, image_size=32, epochs=5,
                    bottleneck_dir=os.path.join(args.out, "cache"))
    flags = []
    for name, value in settings.items():
        flags += [f"--{name}", value]
    warm = [f for name, value in settings.items() if name != "epochs" for f in (f"--{name}", value)]
    # Fill the bottleneck cache in another process, so both searches start alike.
    measure.run(measure.python("-m", "tuning", "--image_dir", images, "--max_trials", 1,
                               "--epochs", 1, "--directory", os.path.join(args.out, "warm"),
                               "--trials_per_process", 0, *warm))

    # Fresh processes first: the waiting parent has not trained anything yet.
    runs = {"fresh": run_search(images, settings, args.out, "fresh_processes", args.trials,
                                args.per_process)}
    runs["one"] = run_search(images, settings, args.out, "one_process", args.trials, None)

    commands = []
    for i, row in enumerate(runs["one"]["rows"][:args.separate]):
        command = ["--image_dir", images, "--output_dir", os.path.join(args.out, f"sep{i}"),
                   "--learning_rate", row["learning_rate"], "--optimizer", row["optimizer"],
                   "--dropout", row["dropout"], "--train_batch_size", row["batch_size"],
                   "--label_smoothing", row["label_smoothing"],
                   "--hidden_units", row.get("hidden_units", 0) if row["hidden_layer"] else 0]
        commands.append(measure.run(measure.python("-m", "retrain", *command, *flags))["seconds"])

    print(f"# Head search, {args.trials} random trials on 1,797 digits "
          f"(LeNet-5 frozen base, 5 epochs, cache filled), {measure.stamp()}\n")
    same = [r["score"] for r in runs["one"]["rows"]] == [r["score"] for r in runs["fresh"]["rows"]]
    print(f"same trials and scores in both modes: {same}\n")
    print("| what | one process | fresh process every "
          f"{args.per_process} trials |\n|---|---|---|")
    print(f"| whole search (s) | {runs['one']['seconds']:.1f} | {runs['fresh']['seconds']:.1f} |")
    for key in ("one", "fresh"):
        later = [r["seconds"] for r in runs[key]["rows"]][1:]
        runs[key]["median"] = statistics.median(later)
    print(f"| later trials, median (s) | {runs['one']['median']:.2f} | "
          f"{runs['fresh']['median']:.2f} |")
    if commands:
        print(f"\none separate `python -m retrain` command, median of {len(commands)}: "
              f"{statistics.median(commands):.1f} s")
    parent_pss = runs["fresh"]["parent"][1]
    print(f"\nAfter each trial, MiB (RSS of the process that ran it; fresh processes: its PSS "
          f"plus the waiting parent's PSS of {parent_pss:.0f} MiB as the total):\n")
    print("| after trial | one process: RSS | fresh processes: RSS | fresh processes: "
          "total PSS |\n|---|---|---|---|")
    one, fresh = runs["one"]["samples"], runs["fresh"]["samples"]
    for i in range(min(len(one), len(fresh))):
        if i < 3 or i == len(one) - 1 or (i + 1) % 5 == 0 or fresh[i][0] != fresh[i - 1][0]:
            print(f"| {i + 1} | {one[i][2]:.0f} | {fresh[i][2]:.0f} (pid {fresh[i][0]}) | "
                  f"{fresh[i][3] + parent_pss:.0f} |")
    for key, label in (("one", "one process"), ("fresh", "fresh processes")):
        s = runs[key]["samples"]
        peak = lambda upto: max(x[2] for x in s[:upto])  # noqa: E731
        print(f"\n{label}: peak RSS after {len(s)} trials vs after 2: {peak(len(s)):.0f} vs "
              f"{peak(2):.0f} MiB ({100 * (peak(len(s)) / peak(2) - 1):+.1f}%)")


if __name__ == "__main__":
    main()
