"""Benchmark: every LiteRT quantization of the models users quantize, against model.keras.

    python bench/bench_quantize.py MODEL_FOLDER [MODEL_FOLDER ...]

For each `kapps retrain` folder: float32, dynamic, float16, plain int8 (every layer
quantized, as before issue 26) and int8 as `--quantize int8` makes it now (the most
harmful layers kept in float until it agrees on held-out training pictures). Each
row: top-1 agreement with model.keras and test accuracy on the folder's test split
(`kapps export`'s own measure), size, one LiteRT invocation (median of 50, one thread)
and the whole test split through `retrain.Predictor` (pictures/s). The folders used in
docs/BENCHMARKS.md:

    kapps retrain --image_dir ~/.cache/kapps/demo/digits --architecture mobilenet_v2 \\
        --weights none --fine_tune all --image_size 32 --epochs 4 --seed 1 --output_dir scratch
    kapps retrain --demo --output_dir small_cnn
    kapps retrain --demo transfer --output_dir transfer
"""
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def main(folders):
    import numpy as np

    from kapps.process import start_devices
    from retrain.formats import int8
    from retrain.export.convert import _split_pictures, export_model
    from retrain.prediction.predictor import Predictor

    start_devices()
    rows = []
    for folder in folders:
        paths, _ = _split_pictures(folder, "test")
        plain_file = os.path.join(folder, "model_int8_plain.tflite")
        for name, quantize in (("float32", None), ("dynamic", "dynamic"),
                               ("float16", "float16"), ("int8 plain", "int8"),
                               ("int8 (kapps)", "int8")):
            if name == "int8 plain":
                kept = int8._layer_orders
                int8._layer_orders = lambda debugger: ([], [])  # nothing kept in float
                try:
                    row = export_model(folder, "litert", "int8", output=plain_file)
                finally:
                    int8._layer_orders = kept
                path = plain_file
            else:
                row = export_model(folder, "litert", quantize)
                path = os.path.join(folder, row["file"])
            with open(path, "rb") as f:
                model_bytes = f.read()
            predictor = Predictor(path, labels=os.path.join(folder, "labels.txt"))
            from ai_edge_litert.interpreter import Interpreter

            shape = Interpreter(model_content=model_bytes).get_input_details()[0]["shape"]
            picture = np.random.default_rng(0).uniform(0, 255, (1, *shape[1:])).astype("float32")
            one = int8.latency_ms(model_bytes, picture, repeats=50)
            start = time.perf_counter()
            predictor.scores(paths)
            rate = len(paths) / (time.perf_counter() - start)
            rows.append((os.path.basename(os.path.normpath(folder)), name, row, one, rate))
            print(f"{rows[-1][0]} {name}: agreement {100 * row['top1_agreement']:.2f}%, "
                  f"accuracy {100 * row['test_accuracy']:.2f}% "
                  f"(model.keras {100 * row['keras_test_accuracy']:.2f}%), "
                  f"{row['size_bytes'] / 2**20:.2f} MiB, {one:.2f} ms, {rate:.0f} pictures/s"
                  + (f", {len(row.get('float_layers', []))} layers in float"
                     if name == "int8 (kapps)" else ""), flush=True)
        os.remove(plain_file)
    print("\n| model | export | top-1 agreement | test accuracy (model.keras) | size | "
          "one picture | test split | layers in float |")
    print("|---|---|---|---|---|---|---|---|")
    for model, name, row, one, rate in rows:
        floats = (str(len(row.get("float_layers", []))) if name == "int8 (kapps)"
                  else "all" if name in ("float32", "float16") else "")
        print(f"| {model} | {name} | {100 * row['top1_agreement']:.2f}% | "
              f"{100 * row['test_accuracy']:.2f}% ({100 * row['keras_test_accuracy']:.2f}%) | "
              f"{row['size_bytes'] / 2**20:.2f} MiB | {one:.2f} ms | {rate:.0f}/s | {floats} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or any(not os.path.isdir(f) for f in sys.argv[1:]):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
