"""Benchmark: head training with the bottleneck cache vs the Keras transfer-learning guide.

    python bench/bench_retrain.py [--image_size 96] [--epochs 10]

Both train a new head on a frozen MobileNetV2 for the same number of epochs on the
scikit-learn digits folder, as whole commands (start-up, data reading and export
included), side by side in one run. Both bases get the same weights file (kapps
builders are weight-compatible with keras.applications; ImageNet files cannot be
downloaded here, and the timing does not depend on the weight values).
kapps is run with an empty cache (the first run on a folder) and again with the
cache filled (every later run, other heads, tuning trials). Prints a markdown table.
"""
import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from measure import python, run, stamp  # noqa: E402

OUT = os.path.join(HERE, "out", "bench_retrain")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    import kapps
    from retrain.demo import write_digits_folder

    digits = write_digits_folder(os.path.join(HERE, "out", "digits"))
    os.makedirs(OUT, exist_ok=True)
    weights = os.path.join(OUT, f"mobilenet_v2_{args.image_size}_notop.weights.h5")
    if not os.path.exists(weights):
        kapps.create_model("mobilenet_v2", include_top=False, weights=None,
                           input_shape=(args.image_size, args.image_size, 3)).save_weights(weights)
    cache = os.path.join(OUT, "bottlenecks")
    shutil.rmtree(cache, ignore_errors=True)
    ours = python("-m", "retrain", "--image_dir", digits, "--architecture", "mobilenet_v2",
                  "--weights", weights, "--image_size", args.image_size, "--epochs", args.epochs,
                  "--bottleneck_dir", cache, "--output_dir", os.path.join(OUT, "kapps_model"),
                  "--verbose", "2")
    guide = python(os.path.join(HERE, "guide_transfer.py"), digits, weights,
                   os.path.join(OUT, "guide_model.keras"), "--image_size", args.image_size,
                   "--epochs", args.epochs)
    rows = [("Keras guide: image_dataset_from_directory + frozen base + fit", run(guide)),
            ("kapps retrain, empty bottleneck cache", run(ours)),
            ("kapps retrain, cache filled", run(ours))]
    base_s, base_mb = rows[0][1]["seconds"], rows[0][1]["peak_mb"]
    print(f"\n{stamp()}, digits folder (1,797 pictures), MobileNetV2 at {args.image_size} px, "
          f"{args.epochs} epochs, {os.cpu_count()} CPU cores\n")
    print("| command | wall time | vs guide | peak memory | vs guide |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['seconds']:.1f} s | {base_s / r['seconds']:.1f}x faster | "
              f"{r['peak_mb']:.0f} MB | {r['peak_mb'] / base_mb:.2f} |")


if __name__ == "__main__":
    main()
