"""Benchmark: `kapps retrain` on 1k, 10k and 100k pictures: time per step, peak memory, cache.

    python bench/bench_scale.py [--sizes 1000 10000 100000] [--root DIR]
                                [--keep]

Writes a folder of small JPEGs (10 classes, 320x240, a few KB each: scikit-learn's
digits enlarged, each in its own colours with noise, so the classes are learnable and
every file is different) on local disk, once for the largest size; each smaller size is
a folder of links to the first pictures of each class. Then, for each size, one whole
`kapps retrain --image_size 96` (frozen MobileNetV2 with torchvision's real weights,
the default head fit) with an empty bottleneck cache, measured as a user runs it:
wall time, peak resident memory (`bench/measure.py`), the seconds of each step that
metrics.json records (scan, base, bottlenecks, fit, evaluate, export), the disk the cache
takes. Prints a markdown table, the ratios the issue's targets are stated in (time
against 100x the 1k figure, memory against the 10k figure) and writes a plot to
docs/img/scale.png. The folder is removed afterwards unless `--keep`. Run by hand.
"""
import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from measure import run  # noqa: E402

CLASSES = 10
STEPS = ("scan", "base", "bottlenecks", "model", "fit", "evaluate", "export")


def _write_class(args):
    """Write `count` JPEGs of digit `label` into `folder` (one process per class)."""
    folder, label, count, seed = args
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    shapes = digits.images[digits.target == label] / 16.0
    rng = np.random.default_rng(seed + label)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        shape = shapes[i % len(shapes)]
        ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        small = paper * (1 - shape[..., None]) + ink * shape[..., None]
        img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((320, 240),
                                                                             Image.BILINEAR)
        pixels = np.asarray(img, np.float32) + rng.normal(0, 12, (240, 320, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"{label}_{i:06d}.jpg"), quality=80)
    return count


def write_folder(root, total, seed=0):
    """`total` pictures under root/all/<digit>/, written in parallel; reused if complete."""
    folder = os.path.join(root, "all")
    per_class = total // CLASSES
    done = all(os.path.isdir(os.path.join(folder, str(c)))
               and len(os.listdir(os.path.join(folder, str(c)))) >= per_class
               for c in range(CLASSES))
    if not done:
        shutil.rmtree(folder, ignore_errors=True)
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_write_class, [(os.path.join(folder, str(c)), c, per_class, seed)
                                         for c in range(CLASSES)]))
    return folder


def subset(root, folder, size):
    """A folder of links to the first size/10 pictures of each class."""
    dest = os.path.join(root, f"n{size}")
    if os.path.isdir(dest):
        return dest
    for c in range(CLASSES):
        names = sorted(os.listdir(os.path.join(folder, str(c))))[:size // CLASSES]
        os.makedirs(os.path.join(dest, str(c)))
        for name in names:
            os.symlink(os.path.join(folder, str(c), name), os.path.join(dest, str(c), name))
    return dest


def disk_mb(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
               for f in files) / 2**20


def measure(root, pictures, size):
    cache, out = os.path.join(root, f"cache{size}"), os.path.join(root, f"model{size}")
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    result = run([sys.executable, "-m", "kapps.cli", "retrain", "--image_dir", pictures,
                  "--image_size", "96", "--bottleneck_dir", cache, "--output_dir", out,
                  "--seed", "1", "--verbose", "2"], cwd=REPO)
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    row = {"pictures": size, "seconds": result["seconds"], "peak_mb": result["peak_mb"],
           "cache_mb": disk_mb(cache), "accuracy": metrics["test_accuracy"],
           "head_fit": metrics.get("head_fit", {}).get("method")}
    row.update({step: metrics["timings"].get(step, 0.0) for step in STEPS})
    shutil.rmtree(out, ignore_errors=True)
    return row


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["pictures"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for step in ("scan", "bottlenecks", "fit", "evaluate", "export"):
        left.plot(sizes, [r[step] for r in rows], marker="o", label=step)
    left.plot(sizes, [r["seconds"] for r in rows], marker="o", color="black", label="whole command")
    left.set(xscale="log", yscale="log", xlabel="pictures", ylabel="seconds",
             title="Time per step")
    left.legend(fontsize=8)
    right.plot(sizes, [r["peak_mb"] for r in rows], marker="o", label="peak resident memory")
    right.plot(sizes, [r["cache_mb"] for r in rows], marker="o", label="bottleneck cache on disk")
    right.set(xscale="log", xlabel="pictures", ylabel="MB", title="Memory and disk")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--root", default=os.path.join(HERE, "out", "scale"),
                        help="where the pictures, caches and models go (local disk)")
    parser.add_argument("--keep", action="store_true", help="keep the pictures afterwards")
    parser.add_argument("--plot", default=os.path.join(REPO, "docs", "img", "scale.png"))
    args = parser.parse_args(argv)
    os.makedirs(args.root, exist_ok=True)
    folder = write_folder(args.root, max(args.sizes))
    print(f"pictures: {disk_mb(folder):.0f} MB for {max(args.sizes)}", flush=True)
    rows = []
    for size in sorted(args.sizes):
        rows.append(measure(args.root, subset(args.root, folder, size), size))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| pictures | whole command s | " + " | ".join(f"{s} s" for s in STEPS)
          + " | peak MB | cache MB | test accuracy |")
    print("|---:|---:|" + "---:|" * len(STEPS) + "---:|---:|---:|")
    for r in rows:
        print(f"| {r['pictures']:,} | {r['seconds']:.1f} | "
              + " | ".join(f"{r[s]:.1f}" for s in STEPS)
              + f" | {r['peak_mb']:.0f} | {r['cache_mb']:.1f} | {r['accuracy']:.2%} |")
    first, last = rows[0], rows[-1]
    scale = last["pictures"] / first["pictures"]
    print(f"\n{last['pictures']:,} against {scale:g}x the {first['pictures']:,} figure: "
          + ", ".join(f"{s} {last[s] / max(scale * first[s], 1e-9):.2f}x"
                      for s in ("scan", "bottlenecks", "fit", "evaluate", "export")))
    if len(rows) > 1:
        print(f"peak memory {last['pictures']:,} against {rows[-2]['pictures']:,}: "
              f"{last['peak_mb'] / rows[-2]['peak_mb']:.2f}x")
    plot(rows, args.plot)
    if not args.keep:
        shutil.rmtree(args.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
