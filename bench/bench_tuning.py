"""Benchmark: a head search's cost per trial, and memory across trials.

    python bench/bench_tuning.py [--trials 20] [--out bench/out/tuning]

Pictures: scikit-learn's 1,797 digits (`retrain.demo.write_digits_folder`). The
frozen base is LeNet-5 with its initial weights saved to a file (offline, and the
same base in every run), so trials train heads on cached bottleneck features.

Reports:
- the one-off preparation (scan, split, bottleneck features) against the trials;
- each trial's wall time and the process's resident memory after it: with
  keras-tuner's `clear_session()` between trials it should stay flat;
- the same number of trials as separate `kapps retrain` commands (Python start,
  TensorFlow import, cache load each time), which is what a hand-made loop costs.

Outputs go under `--out` (git-ignored). Run by hand; not a test. Timings depend on
what else the machine runs.
"""
import argparse
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import measure  # noqa: E402


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--separate", type=int, default=3,
                   help="how many separate `kapps retrain` commands to time")
    p.add_argument("--out", default=os.path.join(HERE, "out", "tuning"))
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    import kapps
    import tuning
    from retrain.demo import write_digits_folder
    from tuning import RetrainHyperModel

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    images = write_digits_folder(os.path.join(args.out, "digits"))
    weights = os.path.join(args.out, "lenet5_notop.weights.h5")
    keras.utils.set_random_seed(0)
    kapps.create_model("lenet5", include_top=False, input_shape=(32, 32, 3)).save_weights(weights)
    settings = dict(architecture="lenet5", weights=weights, image_size=32, epochs=5,
                    bottleneck_dir=os.path.join(args.out, "cache"))

    samples = []

    class Measured(RetrainHyperModel):
        def fit(self, hp, model, *a, **k):
            history = super().fit(hp, model, *a, **k)
            samples.append(rss_mb())
            return history

    start = time.perf_counter()
    tuner, rows = tuning.search(images, "random", max_trials=args.trials, hypermodel=Measured,
                                directory=os.path.join(args.out, "runs"), **settings)
    total = time.perf_counter() - start
    seconds = [r["seconds"] for r in rows]

    commands = []
    for i, row in enumerate(rows[:args.separate]):
        flags = ["--image_dir", images, "--output_dir", os.path.join(args.out, f"sep{i}"),
                 "--learning_rate", row["learning_rate"], "--optimizer", row["optimizer"],
                 "--dropout", row["dropout"], "--train_batch_size", row["batch_size"],
                 "--label_smoothing", row["label_smoothing"],
                 "--hidden_units", row.get("hidden_units", 0) if row["hidden_layer"] else 0]
        for name, value in settings.items():
            flags += [f"--{name}", value]
        commands.append(measure.run(measure.python("-m", "retrain", *flags))["seconds"])

    print(f"# Head search, {args.trials} random trials on 1,797 digits "
          f"(LeNet-5 frozen base, 5 epochs), {measure.stamp()}\n")
    print("| what | seconds |\n|---|---|")
    print(f"| whole search (incl. preparation, results) | {total:.1f} |")
    print(f"| trial 1 (includes the one-off preparation: scan, bottlenecks) | {seconds[0]:.1f} |")
    later = seconds[1:]
    print(f"| later trials, median (min-max) | {statistics.median(later):.2f} "
          f"({min(later):.2f}-{max(later):.2f}) |")
    if commands:
        print(f"| one `python -m retrain` command, median of {len(commands)} "
              f"| {statistics.median(commands):.1f} |")
    best = max(rows, key=lambda r: r["score"] or 0)
    print(f"\nbest val_accuracy {best['score']:.4f} (trial {int(best['trial_id']) + 1})\n")
    print("| after trial | RSS MiB |\n|---|---|")
    for i, mb in enumerate(samples):
        if i < 3 or i == len(samples) - 1 or (i + 1) % 5 == 0:
            print(f"| {i + 1} | {mb:.0f} |")
    if len(samples) >= 6:
        half = samples[len(samples) // 2:]
        print(f"\nRSS growth over the second half: {half[-1] - half[0]:+.0f} MiB "
              f"({(half[-1] - half[0]) / (len(half) - 1):+.1f} MiB per trial)")


if __name__ == "__main__":
    main()
