"""Benchmark: `kapps predict` against its peer and against its own floor.

    python bench/bench_predict_floor.py --model DIR [--photos 100] [--limit 0] [--one 5]

`--model` is a folder written by a frozen-base retrain whose feature pass ran on LiteRT,
so its base conversion is kept beside model.keras (`kapps retrain --runtime litert`);
`kapps predict` then answers from it without TensorFlow. Two figures, each from whole
commands run one after the other in this one run:

- the peer ratio: the one-picture loop (PIL, resize, `model.predict` per picture, as
  `bench/bench_predict.py` runs it) against `kapps predict` on the folder;
- the floor ratio: `kapps predict` against the sum of what its path cannot avoid, each
  part measured alone: Python's start, the imports that path needs (NumPy, Pillow, the
  LiteRT runtime), loading the kept base and head, and the base's compute over as many
  pictures at the runtime's raw rate (already-resized pixels, batches of 32). Decoding
  is shown beside it: on the digits it is nothing, on phone photos it is most of the
  work, which is why the floor ratio is given with and without it.

Also one picture as a whole command. Prints markdown tables. Run by hand; not a test.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_predict import DEFAULT_DIGITS, limited_folder, timed  # noqa: E402

# What each part of the floor runs, in a fresh process: its time minus Python's start.
_IMPORTS = "import numpy, PIL.Image, ai_edge_litert.interpreter"
_LOAD = r"""
import glob, os, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
start = time.perf_counter()
runtime = os.path.join(sys.argv[1], ".runtime")
base = glob.glob(os.path.join(runtime, "*-base.tflite"))[0]
interpreter = Interpreter(model_path=base, num_threads=os.cpu_count())
interpreter.allocate_tensors()
with np.load(glob.glob(os.path.join(runtime, "*-head.npz"))[0]) as head:
    layers = [head[name] for name in head.files]
print(time.perf_counter() - start)
"""
_COMPUTE = r"""
import glob, os, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
count = int(sys.argv[2])
base = glob.glob(os.path.join(sys.argv[1], ".runtime", "*-base.tflite"))[0]
interpreter = Interpreter(model_path=base, num_threads=os.cpu_count())
detail = interpreter.get_input_details()[0]
side = int(detail["shape"][1])
batch = np.random.default_rng(0).uniform(0, 255, (32, side, side, 3)).astype(np.float32)
interpreter.resize_tensor_input(detail["index"], batch.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(detail["index"], batch)
interpreter.invoke()  # warm-up, as the command's first batch is not
start = time.perf_counter()
for _ in range(-(-count // 32)):
    interpreter.set_tensor(detail["index"], batch)
    interpreter.invoke()
print((time.perf_counter() - start) * count / (32 * -(-count // 32)))
"""
_DECODE = r"""
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
from retrain.data import images
paths = images.list_image_files(sys.argv[1])
side = int(sys.argv[2])
start = time.perf_counter()
with ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(lambda p: images.load_image(p, min_side=side), paths))
print(time.perf_counter() - start)
"""


def python_seconds(code, *args, env, repeats=3):
    """Median wall seconds of `python -c code args` as a whole process, and its last line."""
    times, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                              text=True, env=env, check=True)
        times.append(time.perf_counter() - start)
        out = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return statistics.median(times), out


def floor_parts(model_dir, folder, count, side, env):
    """{part: seconds} of the floor, each measured alone."""
    start_s, _ = python_seconds("pass", env=env)
    imports_s, _ = python_seconds(_IMPORTS, env=env)
    _, load = python_seconds(_LOAD, model_dir, env=env)
    _, compute = python_seconds(_COMPUTE, model_dir, count, env=env, repeats=1)
    _, decode = python_seconds(_DECODE, folder, side, env=env, repeats=1)
    return {"Python start": start_s, "imports (NumPy, Pillow, LiteRT)": imports_s - start_s,
            "load the kept base and head": float(load),
            f"base compute, {count} pictures at the raw rate": float(compute),
            "decoding, every core (beside the floor)": float(decode)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a folder with a kept base conversion")
    parser.add_argument("--digits_dir", default=DEFAULT_DIGITS)
    parser.add_argument("--photos", type=int, default=0,
                        help="N phone-size JPEGs instead of the digits (0: digits)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pictures")
    parser.add_argument("--one", type=int, default=5, help="one-picture commands to time")
    args = parser.parse_args(argv)

    from retrain import demo
    from retrain.data import images
    from retrain.prediction.backends import metrics_image_size
    from retrain.prediction.predictor import Predictor

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    model = os.path.abspath(args.model)
    path = Predictor(model).answered_by
    if "base the retrain kept" not in path:
        sys.exit(f"{model} is answered by {path}: retrain it with --runtime litert")
    if args.photos:
        from make_photos import write_photos

        folder = limited_folder(write_photos(count=args.photos), args.limit)
    else:
        folder = limited_folder(demo.write_digits_folder(args.digits_dir), args.limit)
    count = len(images.list_image_files(folder))
    side = max(metrics_image_size(model))
    command = [sys.executable, "-m", "kapps.cli", "predict", "--model", model, "--top_k", "1",
               "--json", folder]
    kapps_s, out = timed(command, env)
    ours = [r["predictions"][0]["label"] for r in json.loads(out)["results"]]
    loop_s, out = timed([sys.executable, os.path.join(HERE, "bench_predict.py"), "--naive_loop",
                         "--model", model, folder], env)
    agreement = sum(a == b for a, b in zip(ours, json.loads(out))) / count
    parts = floor_parts(model, folder, count, side, env)
    floor = sum(v for k, v in parts.items() if not k.startswith("decoding"))
    with_decode = floor + parts["decoding, every core (beside the floor)"]
    one = statistics.median(timed(command[:-1] + [images.list_image_files(folder)[0]], env)[0]
                            for _ in range(args.one))

    print(f"{count} pictures ({'phone photos' if args.photos else 'digits'}), model at {side} px, "
          f"{os.cpu_count()} cores; answered by {path}.\n")
    print("| what | seconds |")
    print("|---|---:|")
    print(f"| `kapps predict` on the folder | {kapps_s:.2f} |")
    print(f"| one picture at a time (PIL + `model.predict`) | {loop_s:.2f} |")
    for name, seconds in parts.items():
        print(f"| floor: {name} | {seconds:.2f} |")
    print(f"| floor, summed (without decoding) | {floor:.2f} |")
    print(f"| `kapps predict` on one picture, whole command (median of {args.one}) | {one:.2f} |")
    print(f"\nPeer ratio: **{loop_s / kapps_s:.1f}x** the one-picture loop (top-1 agreement "
          f"{agreement:.1%}). Floor ratio: **{kapps_s / floor:.2f}x** its floor "
          f"({kapps_s / with_decode:.2f}x the floor with decoding).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
