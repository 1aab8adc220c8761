"""Benchmark: `kapps retrain` on 1k, 10k and 100k pictures: time per step, peak memory, cache.

    python bench/bench_scale.py [--sizes 1000 10000 100000] [--root DIR]
                                [--keep] [--broken 0.01 [--scan_repeats 3]]

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

With `--broken SHARE`, each size is also run on a copy of its folder where SHARE of the
files (every 1/SHARE-th) are broken, half of them empty and half truncated JPEGs: the
report lines it prints and its scan, and with `--scan_repeats N` the scan alone
(`scan_image_folder` as an empty-cache retrain runs it), N times alternating between the
clean and the broken folder, each in a fresh process with a warm page cache.
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


def broken_copy(root, folder, size, share):
    """A copy of the links folder `folder` where every 1/`share`-th file (by sorted name,
    per class) is broken: empty, or the first third of its JPEG (truncated), by turns."""
    dest = os.path.join(root, f"n{size}_broken")
    if os.path.isdir(dest):
        return dest
    step, count = round(1 / share), 0
    for c in range(CLASSES):
        os.makedirs(os.path.join(dest, str(c)))
        for i, name in enumerate(sorted(os.listdir(os.path.join(folder, str(c))))):
            source, target = os.path.join(folder, str(c), name), os.path.join(dest, str(c), name)
            if i % step != step - 1:
                os.symlink(os.path.realpath(source), target)
                continue
            with open(source, "rb") as f:
                data = f.read()
            with open(target, "wb") as f:
                f.write(b"" if count % 2 else data[:len(data) // 3])
            count += 1
    return dest


SCAN = ("import sys, time; from retrain.data.dataset import scan_image_folder; "
        "t = time.perf_counter(); "
        "d = scan_image_folder(sys.argv[1], verify='header'); "
        "print(time.perf_counter() - t, len(d.records), len(d.report.broken))")


def time_scans(folders, repeats):
    """{folder: [seconds of the scan alone]}, the folders alternating, after one warm-up each."""
    import subprocess

    times = {folder: [] for folder in folders}
    for round_ in range(repeats + 1):
        for folder in folders:
            out = subprocess.run([sys.executable, "-c", SCAN, folder], cwd=REPO, check=True,
                                 capture_output=True, text=True).stdout.split()
            if round_:  # the first round only warms the page cache
                times[folder].append(float(out[0]))
    return times


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
           "head_fit": metrics.get("head_fit", {}).get("method"),
           "report": [line for line in (result["stdout"] + result["stderr"]).splitlines()
                      if "broken" in line or " pictures in " in line],
           "broken_in_report_json": len(_report(out).get("broken", []))}
    row.update({step: metrics["timings"].get(step, 0.0) for step in STEPS})
    shutil.rmtree(out, ignore_errors=True)
    return row


def _report(out):
    try:
        with open(os.path.join(out, "dataset_report.json"), encoding="utf-8") as f:
            return json.load(f)
    except OSError:
        return {}


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
    parser.add_argument("--broken", type=float, default=0.0,
                        help="also run each size with this share of its files broken")
    parser.add_argument("--scan_repeats", type=int, default=0,
                        help="with --broken: time the scan alone this many times per folder")
    parser.add_argument("--skip_clean", action="store_true",
                        help="with --broken: no retrain of the clean folders")
    parser.add_argument("--scan_only", action="store_true",
                        help="with --broken: no retrain of the broken folders either")
    args = parser.parse_args(argv)
    os.makedirs(args.root, exist_ok=True)
    folder = write_folder(args.root, max(args.sizes))
    print(f"pictures: {disk_mb(folder):.0f} MB for {max(args.sizes)}", flush=True)
    rows = []
    for size in sorted(args.sizes):
        clean = subset(args.root, folder, size)
        if not args.skip_clean:
            rows.append(measure(args.root, clean, size))
            print(json.dumps(rows[-1]), flush=True)
        if args.broken:
            broken = broken_copy(args.root, clean, size, args.broken)
            if not args.scan_only:
                print(json.dumps(dict(measure(args.root, broken, size), broken=args.broken)),
                      flush=True)
            if args.scan_repeats:
                times = time_scans([clean, broken], args.scan_repeats)
                print(json.dumps({"pictures": size, "scan_clean_s": times[clean],
                                  "scan_broken_s": times[broken],
                                  "ratio_of_medians": float(np.median(times[broken])
                                                            / np.median(times[clean]))}),
                      flush=True)
    if not rows:
        return 0
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
