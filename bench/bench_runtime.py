"""Benchmark: when a converted model pays, TensorFlow against LiteRT and ONNX Runtime.

    python bench/bench_runtime.py [--pictures 256] [--sizes 96 224]

For (a) bottleneck extraction, the frozen no-top MobileNetV2 base (random weights:
speed does not depend on weights) at each `--sizes` side, run over `--pictures`
synthetic JPEGs through the bottleneck cache's own tf.data pipeline, and (b)
prediction, a whole MobileNetV2 classifier at 224 px through `Predictor` on the same
picture files, it measures:
- conversion seconds (`retrain.prediction.runtimes.convert`, float32);
- fixed seconds (the first pass's extra over the faster of two more passes: tracing,
  allocation; for prediction, loading the model file) and per-picture seconds (that
  faster pass: the least disturbed by other work on a shared machine);
and prints the crossover: the fewest pictures for which converting, then running
the runtime, takes less time than running TensorFlow,
(conversion + runtime fixed - TensorFlow fixed) / (TensorFlow - runtime per picture).
`retrain.prediction.runtimes.EXTRACT_CROSSOVER_224` and `PREDICT_CROSSOVER` are chosen from it.
Prints markdown tables. Run by hand; not a test.
"""
import argparse
import os
import sys
import time
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from measure import stamp  # noqa: E402

OUT = os.path.join(HERE, "out", "runtime")
RUNTIMES = ("tensorflow", "litert", "onnx")
Record = namedtuple("Record", "path digest")


def make_pictures(count):
    """`count` noisy 320x240 JPEGs (a camera picture's shape, small), made once."""
    import numpy as np
    from PIL import Image

    folder = os.path.join(OUT, f"pictures_{count}")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"{i:05d}.jpg")
        if not os.path.isfile(path):
            base = rng.integers(0, 256, 3)
            pixels = np.clip(base + rng.normal(0, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def crossover(convert_s, fixed, per_picture, runtime):
    """Fewest pictures for which converting for `runtime` beats TensorFlow (None: never)."""
    saved = per_picture["tensorflow"] - per_picture[runtime]
    if saved <= 0:
        return None
    return max(1, int((convert_s + fixed[runtime] - fixed["tensorflow"]) / saved) + 1)


def extraction(size, paths, batch_size=32):
    """{runtime: (convert s, fixed s, per-picture s)} of the frozen base at `size`."""
    from retrain.prediction import runtimes
    from retrain.train import bottlenecks
    from retrain.config import RetrainConfig
    from retrain.train.model import build_base

    config = RetrainConfig(architecture="mobilenet_v2", weights="none", image_size=size)
    extractor = build_base(config).extractor
    jobs = [(Record(path, str(i)), "v0") for i, path in enumerate(paths)]
    results = {}
    for runtime in RUNTIMES:
        convert_s = 0.0
        if runtime == "tensorflow":
            run = lambda dataset: extractor.predict(dataset, verbose=0)  # noqa: E731
        else:
            path = os.path.join(OUT, f"base_{size}{runtimes.CONVERTED[runtime][3]}")
            if os.path.exists(path):
                os.remove(path)
            convert_s, _ = timed(lambda: runtimes.convert(extractor, path, (size, size),
                                                          runtime))
            backend = runtimes.load_converted(runtime, path, batch_size)

            def run(dataset, backend=backend):
                import numpy as np

                return np.concatenate([backend.infer(b.numpy()) for b in dataset])
        passes = [timed(lambda: run(bottlenecks._pictures(jobs, size, config, batch_size)))[0]
                  for _ in range(3)]
        best = min(passes[1:])
        results[runtime] = (convert_s, passes[0] - best, best / len(paths))
        print(f"  extraction {size} px, {runtime}: convert {convert_s:.1f} s, passes "
              f"{' / '.join(f'{p:.2f}' for p in passes)} s", flush=True)
    return results


def prediction(paths, size=224, batch_size=32):
    """{runtime: (convert s, fixed s, per-picture s)} of a whole classifier at `size`."""
    import keras

    import kapps
    from retrain.prediction import runtimes
    from retrain.prediction.predictor import Predictor

    folder = os.path.join(OUT, f"classifier_{size}")
    os.makedirs(folder, exist_ok=True)
    model_path = os.path.join(folder, "model.keras")
    if not os.path.isfile(model_path):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((None, None, 3), name="pixels")
        x = keras.layers.Resizing(size, size, name="resize")(inputs)
        x = kapps.preprocessing_layer("tf")(x)
        x = kapps.create_model("mobilenet_v2", weights=None, include_top=False, pooling="avg",
                               input_shape=(size, size, 3))(x)
        outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
        keras.Model(inputs, outputs).save(model_path)
        with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(str(i) for i in range(10)) + "\n")
    load_s, keras_predictor = timed(lambda: Predictor(folder, runtime="tensorflow",
                                                      batch_size=batch_size))
    results = {}
    for runtime in RUNTIMES:
        convert_s = 0.0
        predictor = keras_predictor
        if runtime != "tensorflow":
            path = os.path.join(OUT, f"classifier_{size}{runtimes.CONVERTED[runtime][3]}")
            if os.path.exists(path):
                os.remove(path)
            convert_s, _ = timed(lambda: runtimes.convert(keras_predictor.model, path,
                                                          (size, size), runtime))
            load_s, predictor = timed(lambda: Predictor(
                path, labels=os.path.join(folder, "labels.txt"), batch_size=batch_size))
        passes = [timed(lambda: predictor.scores(paths))[0] for _ in range(3)]
        best = min(passes[1:])
        # Loading counts as fixed: the runtime's after conversion, TensorFlow's every time.
        results[runtime] = (convert_s, load_s + passes[0] - best, best / len(paths))
        print(f"  prediction {size} px, {runtime}: load {load_s:.2f} s, convert "
              f"{convert_s:.1f} s, passes {' / '.join(f'{p:.2f}' for p in passes)} s",
              flush=True)
    # Converting needs model.keras loaded anyway: the runtime pays TensorFlow's load too.
    for runtime in RUNTIMES[1:]:
        convert_s, fixed, per = results[runtime]
        results[runtime] = (convert_s, fixed + results["tensorflow"][1], per)
    return results


def table(title, results):
    fixed = {r: v[1] for r, v in results.items()}
    per = {r: v[2] for r, v in results.items()}
    lines = [f"### {title}", "",
             f"| runtime ({stamp()}) | conversion | fixed | per picture | vs TensorFlow "
             "| crossover (pictures) |", "|---|---:|---:|---:|---:|---:|"]
    for runtime, (convert_s, fixed_s, per_s) in results.items():
        cross = "" if runtime == "tensorflow" else crossover(convert_s, fixed, per, runtime)
        lines.append(f"| {runtime} | {convert_s:.1f} s | {fixed_s:.2f} s | {1000 * per_s:.2f} ms "
                     f"| {per['tensorflow'] / per_s:.2f}x | "
                     f"{'never' if cross is None else cross} |")
    return "\n".join(lines + [""])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kapps.process import start_devices

    start_devices()
    paths = make_pictures(args.pictures)
    out = [f"`python bench/bench_runtime.py --pictures {args.pictures} --sizes "
           f"{' '.join(map(str, args.sizes))}`; {os.cpu_count()} CPU cores.", ""]
    for size in args.sizes:
        out.append(table(f"Bottleneck extraction, no-top MobileNetV2 at {size} px, "
                         f"{args.pictures} pictures", extraction(size, paths)))
        print(out[-1], flush=True)
    out.append(table(f"Prediction, MobileNetV2 classifier at 224 px (`Predictor.scores`), "
                     f"{args.pictures} pictures", prediction(paths)))
    print(out[-1], flush=True)
    with open(os.path.join(OUT, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
