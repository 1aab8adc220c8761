"""Benchmark: how close `kapps predict` on a folder comes to its runtime's own speed.

    python bench/bench_folder_limit.py [--digits 400] [--photos 102] [--threads 1 2]

MobileNetV2 at 224 px (random weights: speed does not depend on them; the model of
`bench_exports.py`) as model.keras, LiteRT float32 and ONNX. For each format, picture
set (digits PNGs: decoding is free; 4000x3000 phone JPEGs: decoding is the cost) and
thread count, in one run:
- runtime on decoded pictures: every picture decoded and resized first, then only the
  network in batches of 32 (the runtime's ceiling for this model);
- decode only: the same pictures decoded and resized on a pool of that many threads;
- `Predictor.scores(paths)`: kapps in a loaded process (decode overlapping inference);
- `kapps predict --json --threads N FOLDER`: the whole command, start-up included.
Then `kapps predict --model FILE one.jpg` as a whole command, median of `--repeats`.
Prints markdown tables. Run by hand; not a test.
"""
import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from bench_exports import demo_model, demo_pictures, mobilenet_model  # noqa: E402
from measure import python, run, stamp  # noqa: E402

FORMATS = [("model.keras (TensorFlow)", None, "model.keras"),
           ("LiteRT float32", ["--format", "litert"], "model.tflite"),
           ("ONNX Runtime", ["--format", "onnx"], "model.onnx")]
BATCH = 32


def exported(folder):
    """{format name: file} of the MobileNetV2 folder, exporting what is missing."""
    files = {}
    for name, argv, file in FORMATS:
        path = os.path.join(folder, file)
        if argv and not os.path.exists(path):
            run(python("-m", "kapps.cli", "export", "--model", folder, *argv))
        files[name] = path
    return files


def keras_runtime(file):
    """`--runtime` flags that keep a model.keras on TensorFlow (not a kept conversion)."""
    return ["--runtime", "tensorflow" if file.endswith(".keras") else "auto"]


def network_only(backend, decoded):
    """Pictures/s of the network alone on pictures already decoded and resized."""
    import numpy as np

    if hasattr(backend, "_infer"):
        infer = backend._infer
    else:  # the Keras backend: its compiled call on float32 batches at the model's size
        infer = lambda batch: backend._call(batch).numpy()  # noqa: E731
    infer(np.stack(decoded[:BATCH]))  # warm-up: allocation, tracing
    start = time.perf_counter()
    for i in range(0, len(decoded), BATCH):
        infer(np.stack(decoded[i:i + BATCH]))
    return len(decoded) / (time.perf_counter() - start)


def decoder(backend):
    """A function from a path to the float32/uint8 array the backend's network takes."""
    from retrain.prediction.backends import load_picture

    if hasattr(backend, "_load"):
        return backend._load
    return lambda path: backend._prepare(load_picture(path, backend.min_side)[None]).numpy()[0]


def measure(file, paths, threads):
    """One row: pictures/s of the network alone, decoding alone, and Predictor.scores."""
    from retrain.prediction.predictor import Predictor

    predictor = Predictor(file, labels=os.path.join(os.path.dirname(file), "labels.txt"),
                          threads=threads, runtime=keras_runtime(file)[-1])
    backend = predictor._backend
    load = decoder(backend)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        decoded = list(pool.map(load, paths))
    decode_pps = len(paths) / (time.perf_counter() - start)
    network_pps = network_only(backend, decoded)
    del decoded
    predictor.scores(paths[:BATCH])  # warm-up: the pipeline's first call
    start = time.perf_counter()
    predictor.scores(paths)
    predict_pps = len(paths) / (time.perf_counter() - start)
    return network_pps, decode_pps, predict_pps


def in_subprocess(file, folder, threads):
    """`measure` in a fresh process limited to `threads` (TensorFlow's pools included)."""
    import json

    code = ("import json, sys; sys.path.insert(0, %r); import bench_folder_limit as b; "
            "from retrain import images; "
            "print(json.dumps(b.measure(%r, images.list_image_files(%r), %d)))"
            % (HERE, file, folder, threads))
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads),
               TF_NUM_INTEROP_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    done = run(python("-c", code), env=env)
    return json.loads(done["stdout"].strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=400)
    parser.add_argument("--photos", type=int, default=102)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from make_photos import write_photos
    from retrain.data import images

    digits = demo_model()
    sets = [("digits (8x8 PNG)", demo_pictures(digits, args.digits)[0])]
    if args.photos:
        sets.append(("phone JPEGs (4000x3000)", write_photos(count=args.photos)))
    files = exported(mobilenet_model(digits))
    print(f"`python bench/bench_folder_limit.py --digits {args.digits} --photos {args.photos} "
          f"--threads {' '.join(map(str, args.threads))}`; {os.cpu_count()} CPU cores.\n")
    print(f"| format ({stamp()}) | pictures | threads | network alone (decoded) | decode alone "
          "| `Predictor.scores` | share of network alone | `kapps predict` whole command "
          "| share |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for set_name, folder in sets:
        count = len(images.list_image_files(folder))
        for name, file in files.items():
            for threads in args.threads:
                network, decode, predict = in_subprocess(file, folder, threads)
                whole = run(python("-m", "kapps.cli", "predict", "--model", file,
                                   *keras_runtime(file), "--threads", threads, "--json",
                                   folder))["seconds"]
                print(f"| {name} | {set_name}, {count} | {threads} | {network:.0f}/s "
                      f"| {decode:.0f}/s | {predict:.0f}/s | {predict / network:.0%} "
                      f"| {whole:.1f} s ({count / whole:.0f}/s) "
                      f"| {count / whole / network:.0%} |", flush=True)
    one = images.list_image_files(sets[-1][1])[0]
    print(f"\n| one picture, whole command ({os.path.basename(one)}) | median of "
          f"{args.repeats} | runs |")
    print("|---|---:|---|")
    for name, file in files.items():
        seconds = [run(python("-m", "kapps.cli", "predict", "--model", file,
                              *keras_runtime(file), one))["seconds"]
                   for _ in range(args.repeats)]
        print(f"| `kapps predict --model {os.path.basename(file)} one.jpg` "
              f"| {statistics.median(seconds):.2f} s "
              f"| {', '.join(f'{s:.2f}' for s in seconds)} |", flush=True)


if __name__ == "__main__":
    main()
