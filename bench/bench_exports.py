"""Benchmark: every export format side by side, size, parity, one picture, a folder.

    python bench/bench_exports.py [--folder_pictures 400] [--calls 30]

Two models: the demo model (`kapps retrain --demo`, SmallCNN at 16 px, trained here if
`bench/out/exports/digits` has none) and MobileNetV2 at 224 px with random weights
(speed does not depend on weights) over the same digits split. Each is exported as a
SavedModel, LiteRT float32 and int8, and ONNX with `kapps export` (whose table gives
size, test accuracy and agreement with model.keras). Then, per format:
- one picture through a loaded `Predictor`, median of `--calls` calls, against
  `model.predict` on the loaded model.keras (what a user script does);
- `kapps predict --json FOLDER` as a whole command (start-up, load, decode, answer) on
  `--folder_pictures` digits, against the same command on model.keras (today's way).
Prints markdown tables. Run by hand; not a test.
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

from measure import python, run, stamp  # noqa: E402

OUT = os.path.join(HERE, "out", "exports")
# (name in tables, export argument, file or folder written); None: model.keras itself.
FORMATS = [("Keras (model.keras)", None, "model.keras"),
           ("SavedModel", ["--format", "saved_model"], "saved_model"),
           ("LiteRT float32", ["--format", "litert"], "model.tflite"),
           ("LiteRT int8", ["--format", "litert", "--quantize", "int8"], "model_int8.tflite"),
           ("ONNX Runtime", ["--format", "onnx"], "model.onnx")]
MODEL_PREDICT = "model.predict"


def demo_model():
    """The `kapps retrain --demo` export folder, trained now if absent."""
    folder = os.path.join(OUT, "digits")
    if not os.path.isfile(os.path.join(folder, "model.keras")):
        run(python("-m", "kapps.cli", "retrain", "--demo", "--output_dir", folder, "--verbose",
                   "0"))
    return folder


def demo_pictures(digits, count):
    """(folder, count) of `count` digits of the image folder the demo model trained on."""
    with open(os.path.join(digits, "metrics.json"), encoding="utf-8") as f:
        image_dir = json.load(f)["config"]["image_dir"]
    return picture_folder(image_dir, count)


def mobilenet_model(digits):
    """MobileNetV2 at 224 px, random weights, ten classes, over the demo model's split."""
    folder = os.path.join(OUT, "mobilenet_v2_224")
    if os.path.isfile(os.path.join(folder, "model.keras")):
        return folder
    import keras

    import kapps

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Resizing(224, 224, name="resize")(inputs)
    x = kapps.preprocessing_layer("tf")(x)
    x = kapps.create_model("mobilenet_v2", weights=None, include_top=False, pooling="avg",
                           input_shape=(224, 224, 3))(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    os.makedirs(folder, exist_ok=True)
    keras.Model(inputs, outputs).save(os.path.join(folder, "model.keras"))
    for name in ("labels.txt", "split.json"):
        shutil.copyfile(os.path.join(digits, name), os.path.join(folder, name))
    with open(os.path.join(digits, "metrics.json"), encoding="utf-8") as f:
        config = dict(json.load(f)["config"], image_size=224, architecture="mobilenet_v2")
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"config": config}, f)
    return folder


def export_all(folder):
    """Run `kapps export` for every format; returns {file: report row}."""
    for _, argv, _ in FORMATS[1:]:
        run(python("-m", "kapps.cli", "export", "--model", folder, *argv))
    with open(os.path.join(folder, "export_report.json"), encoding="utf-8") as f:
        return json.load(f)


def picture_folder(image_dir, count):
    """`count` digits spread over the classes, copied to one folder."""
    from retrain.data import images

    paths = images.list_image_files(image_dir)
    chosen = paths[::max(1, len(paths) // count)][:count]
    dest = os.path.join(OUT, f"pictures_{len(chosen)}")
    if not os.path.isdir(dest):
        os.makedirs(dest)
        for i, path in enumerate(chosen):
            shutil.copyfile(path, os.path.join(dest, f"{i:05d}_{os.path.basename(path)}"))
    return dest, len(chosen)


def median_ms(call, calls):
    for _ in range(3):  # warm-up: tracing, allocation, caches
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def single_picture(folder, picture, calls):
    """{format name: median ms} through a loaded Predictor, plus `model.predict` on the
    loaded model.keras with the picture already resized (what a user's script does)."""
    from retrain.data import images
    from retrain.prediction.backends.resize import resize_bilinear
    from retrain.prediction.predictor import Predictor

    labels = os.path.join(folder, "labels.txt")
    latency = {}
    for name, _, file in FORMATS:
        predictor = Predictor(os.path.join(folder, file), labels=labels,
                              runtime="tensorflow" if file.endswith(".keras") else "auto")
        latency[name] = median_ms(lambda: predictor.predict(picture), calls)
        if predictor.model is not None:
            model = predictor.model
            side = model.get_layer("resize").height
            batch = resize_bilinear(images.load_image(picture), side, side)[None]
            latency[MODEL_PREDICT] = median_ms(lambda: model.predict(batch, verbose=0), calls)
    return latency


def folder_throughput(folder, pictures):
    """{format name: seconds} for the whole `kapps predict --json FOLDER` command."""
    labels = os.path.join(folder, "labels.txt")
    return {name: run(python("-m", "kapps.cli", "predict", "--model", os.path.join(folder, file),
                             "--labels", labels, "--json", pictures))["seconds"]
            for name, _, file in FORMATS}


def table(title, report, latency, seconds, count):
    keras_s, predict_ms = seconds[FORMATS[0][0]], latency[MODEL_PREDICT]
    lines = [f"### {title}", "",
             f"| format ({stamp()}) | size | test accuracy | top-1 agreement | max score diff "
             f"| one picture | vs `model.predict` | folder of {count}, whole command "
             "| vs `kapps predict` on model.keras |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, _, file in FORMATS:
        row = report[file]
        agreement, diff = row.get("top1_agreement"), row.get("max_score_difference")
        size = row["size_bytes"]
        lines.append(
            f"| {name} | {size / 2**20:.2f} MiB | {percent(row['test_accuracy'])} "
            f"| {percent(agreement)} | {'' if diff is None else f'{diff:.1e}'} "
            f"| {latency[name]:.2f} ms | {predict_ms / latency[name]:.1f}x "
            f"| {seconds[name]:.1f} s ({count / seconds[name]:.0f}/s) "
            f"| {keras_s / seconds[name]:.2f}x |")
    lines += ["", f"`model.predict` on one resized picture, model loaded: {predict_ms:.1f} ms.",
              ""]
    return "\n".join(lines)


def percent(value):
    return "" if value is None else f"{100 * value:.2f}%"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder_pictures", type=int, default=400)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    digits = demo_model()
    pictures, count = demo_pictures(digits, args.folder_pictures)
    one = os.path.join(pictures, sorted(os.listdir(pictures))[0])
    out = [f"`python bench/bench_exports.py --folder_pictures {args.folder_pictures} "
           f"--calls {args.calls}`; {os.cpu_count()} CPU cores.", ""]
    for title, folder in (("Demo model (SmallCNN, 16 px)", digits),
                          ("MobileNetV2, 224 px", mobilenet_model(digits))):
        report = export_all(folder)
        latency = single_picture(folder, one, args.calls)
        seconds = folder_throughput(folder, pictures)
        keras_size = os.path.getsize(os.path.join(folder, "model.keras"))
        report["model.keras"] = {"test_accuracy": next(iter(report.values()))[
            "keras_test_accuracy"], "size_bytes": keras_size}
        out.append(table(title, report, latency, seconds, count))
        print(out[-1], flush=True)
    with open(os.path.join(OUT, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
