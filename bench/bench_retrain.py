"""Benchmark: head training with the bottleneck cache vs the Keras transfer-learning guide.

    python bench/bench_retrain.py [--image_size 96] [--epochs 10]
    python bench/bench_retrain.py --photos 100 [--before DIR]   # phone photos at 224 px

Both train a new head on a frozen MobileNetV2 for the same number of epochs, as whole
commands (start-up, data reading and export included), side by side in one run, on
the scikit-learn digits folder or, with `--photos N`, on N 4000x3000 phone-size JPEGs
(`bench/make_photos.py`; the image size then defaults to 224). Both bases get the same
weights file (kapps builders are weight-compatible with keras.applications; ImageNet
files cannot be downloaded here, and the timing does not depend on the weight values).
kapps is run with an empty cache (the first run on a folder) and again with the cache
filled (every later run, other heads, tuning trials); `--before DIR` adds a run of the
kapps code checked out at DIR (e.g. `git archive main | tar -x -C DIR`) with an empty
cache. Prints a markdown table of the commands, and one of where each kapps run spent
its time (`metrics.json`'s `timings`; start-up is from launch to `started_at`).
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from measure import code_env, python, run, stamp  # noqa: E402

OUT = os.path.join(HERE, "out", "bench_retrain")
STEPS = ("scan", "base", "bottlenecks", "model", "fit", "evaluate", "export")


def kapps_command(image_dir, weights, args, name):
    """The `python -m retrain` command of row `name`, with its own cache and output folder."""
    return python("-m", "retrain", "--image_dir", image_dir, "--architecture", "mobilenet_v2",
                  "--weights", weights, "--image_size", args.image_size, "--epochs", args.epochs,
                  "--bottleneck_dir", os.path.join(OUT, f"bottlenecks_{name}"),
                  "--output_dir", os.path.join(OUT, f"kapps_{name}"), "--verbose", "2")


def step_times(result, name):
    """{step: seconds} of a kapps run: start-up, its `timings`, and the rest of the wall time."""
    with open(os.path.join(OUT, f"kapps_{name}", "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    steps = {"start-up": metrics["started_at"] - result["launched"]}
    steps.update((k, metrics.get("timings", {}).get(k)) for k in STEPS)
    steps["rest"] = result["seconds"] - sum(v or 0 for v in steps.values())
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=None,
                        help="input side (default 96 on digits, 224 on photos)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--photos", type=int, default=0,
                        help="use N phone-size JPEGs instead of the digits (0: digits)")
    parser.add_argument("--before", default=None,
                        help="a checkout of earlier kapps code to run beside this one")
    args = parser.parse_args()
    args.image_size = args.image_size or (224 if args.photos else 96)

    import kapps

    if args.photos:
        from make_photos import write_photos

        image_dir = write_photos(count=args.photos)
        what = f"{args.photos} phone photos (4000x3000 JPEG, 1.9 MB each)"
    else:
        from retrain.demo import write_digits_folder

        image_dir = write_digits_folder(os.path.join(HERE, "out", "digits"))
        what = "digits folder (1,797 pictures)"
    os.makedirs(OUT, exist_ok=True)
    weights = os.path.join(OUT, f"mobilenet_v2_{args.image_size}_notop.weights.h5")
    if not os.path.exists(weights):
        kapps.create_model("mobilenet_v2", include_top=False, weights=None,
                           input_shape=(args.image_size, args.image_size, 3)).save_weights(weights)
    for name in ("now", "before"):
        shutil.rmtree(os.path.join(OUT, f"bottlenecks_{name}"), ignore_errors=True)
    guide = python(os.path.join(HERE, "guide_transfer.py"), image_dir, weights,
                   os.path.join(OUT, "guide_model.keras"), "--image_size", args.image_size,
                   "--epochs", args.epochs)
    rows = [("Keras guide: image_dataset_from_directory + frozen base + fit", run(guide), None)]
    if args.before:
        rows.append(("kapps retrain before (`--before` code), empty bottleneck cache",
                     run(kapps_command(image_dir, weights, args, "before"),
                         **code_env(args.before)), "before"))
    ours = kapps_command(image_dir, weights, args, "now")
    rows.append(("kapps retrain, empty bottleneck cache", run(ours), "now"))
    empty = step_times(rows[-1][1], "now")
    rows.append(("kapps retrain, cache filled", run(ours), "now"))
    base_s, base_mb = rows[0][1]["seconds"], rows[0][1]["peak_mb"]
    print(f"\n{stamp()}, {what}, MobileNetV2 at {args.image_size} px, "
          f"{args.epochs} epochs, {os.cpu_count()} CPU cores\n")
    print("| command | wall time | vs guide | peak memory | vs guide |")
    print("|---|---|---|---|---|")
    for name, r, _ in rows:
        print(f"| {name} | {r['seconds']:.1f} s | {base_s / r['seconds']:.1f}x faster | "
              f"{r['peak_mb']:.0f} MB | {r['peak_mb'] / base_mb:.2f} |")
    steps = [(name, step_times(r, tag)) for name, r, tag in rows[1:-1]]
    steps[-1] = (steps[-1][0], empty)
    steps.append((rows[-1][0], step_times(rows[-1][1], "now")))
    print("\n| seconds per step | " + " | ".join(("start-up",) + STEPS + ("rest",)) + " |")
    print("|---|" + "---:|" * (len(STEPS) + 2))
    for name, times in steps:
        print(f"| {name} | " + " | ".join("-" if v is None else f"{v:.1f}"
                                          for v in times.values()) + " |")


if __name__ == "__main__":
    main()
