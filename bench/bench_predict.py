"""Benchmark: `kapps predict` on a folder vs a one-picture-at-a-time loop, same model.

    python bench/bench_predict.py --model saved_models/digits [--limit 500]
    python bench/bench_predict.py --model bench/out/bench_retrain/kapps_now --photos 100 \
        [--before DIR]

Both ways run as whole commands in a subprocess (Python start, TensorFlow import,
model load included), on the scikit-learn digits folder written by
`retrain.demo.write_digits_folder` or, with `--photos N`, on N 4000x3000 phone-size
JPEGs (`bench/make_photos.py`); their top-1 answers are compared so a fast but
wrong path shows up. `--before DIR` adds `kapps predict` run from the kapps code
checked out at DIR. Then, in this process, the latency of one picture through a
loaded `Predictor` vs `model.predict`. Prints markdown tables. Run by hand; not a test.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIGITS = os.path.join(HERE, "out", "digits")


def naive_loop(model_dir, paths):
    """The loop the batched path replaces: PIL load, resize, `model.predict` per picture.

    Returns the top-1 label of each picture.
    """
    import keras
    import numpy as np
    from PIL import Image

    import kapps.preprocessing  # noqa: F401  (registers kapps.Preprocess)
    from retrain.prediction.backends.keras_backend import model_image_size
    from retrain.prediction.predictor import read_labels

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"), safe_mode=True)
    labels = read_labels(os.path.join(model_dir, "labels.txt"))
    height, width = model_image_size(model, model_dir)
    top1 = []
    for path in paths:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB").resize((width, height), Image.BILINEAR))
        scores = model.predict(pixels[None].astype("float32"), verbose=0)[0]
        top1.append(labels[int(np.argmax(scores))])
    return top1


def timed(command, env, cwd=None):
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd,
                          check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def compare_folder(model_dir, folder, env, before=None, exports=(), extra_flags=(), rounds=1):
    """(rows, top-1 agreement) for the batched command and the one-at-a-time command.

    The one-at-a-time row comes last; with `before` (a checkout of earlier kapps code)
    its `kapps predict` comes second; then one row per file of `exports` (a `.tflite` or
    `.onnx` of the same model) and per entry of `extra_flags` (flags added to the first
    command, e.g. `--runtime litert`). With `rounds` > 1 the first two commands run that
    many times, alternating, and their rows give the median.
    """
    from retrain.data import images

    paths = images.list_image_files(folder)
    command = [sys.executable, "-m", "kapps.cli", "predict", "--model", model_dir,
               "--top_k", "1", "--json", folder]
    # `python -m` looks in the working directory first, so `before` runs in the checkout.
    sides = [(env, None)] + ([(dict(env, PYTHONPATH=os.path.abspath(before)),
                               os.path.abspath(before))] if before else [])
    seconds = [[] for _ in sides]
    for _ in range(rounds):
        for index, (side_env, cwd) in enumerate(sides):
            side_s, out = timed(command, side_env, cwd=cwd)
            seconds[index].append(side_s)
            if index == 0:
                batched = [r["predictions"][0]["label"] for r in json.loads(out)["results"]]
    rows = [("`kapps predict` folder (tf.data, batches)", len(batched),
             statistics.median(seconds[0]))]
    if before:
        rows.append(("`kapps predict` folder, `--before` code", len(batched),
                     statistics.median(seconds[1])))
    for export in exports:
        export_s, out = timed(command[:4] + ["--model", export, "--labels",
                                             os.path.join(model_dir, "labels.txt")]
                              + command[6:], env)
        rows.append((f"`kapps predict` folder on `{os.path.basename(export)}`",
                     len(json.loads(out)["results"]), export_s))
    for flags in extra_flags:
        flagged_s, out = timed(command + flags.split(), env)
        rows.append((f"`kapps predict {flags}` folder", len(json.loads(out)["results"]),
                     flagged_s))
    naive_s, out = timed([sys.executable, os.path.abspath(__file__), "--naive_loop",
                          "--model", model_dir, folder], env)
    naive = json.loads(out)
    agreement = sum(a == b for a, b in zip(batched, naive)) / len(paths)
    rows.append(("one at a time (PIL + `model.predict`)", len(naive), naive_s))
    return rows, agreement


def one_picture_commands(model_dir, path, env, before=None, repeats=5):
    """Median seconds of `kapps predict` on one picture as a whole command (TensorFlow on
    the model.keras), with the `before` code alternating with this one: [(name, median)]."""
    command = [sys.executable, "-m", "kapps.cli", "predict", "--model", model_dir,
               "--runtime", "tensorflow", path]
    sides = [("`kapps predict --runtime tensorflow`, one picture", env, None)]
    if before:
        sides.append(("the same, `--before` code", dict(env, PYTHONPATH=os.path.abspath(before)),
                      os.path.abspath(before)))
    times = {name: [] for name, _, _ in sides}
    for _ in range(repeats):
        for name, side_env, cwd in sides:
            times[name].append(timed(command, side_env, cwd=cwd)[0])
    return [(name, statistics.median(seconds)) for name, seconds in times.items()]


def single_latency(model_dir, path, repeats):
    """Median seconds for one picture: loaded `Predictor.predict` vs `model.predict`."""
    import numpy as np
    from PIL import Image

    from retrain.data import images
    from retrain.prediction.backends.keras_backend import model_image_size
    from retrain.prediction.predictor import Predictor

    predictor = Predictor(model_dir, runtime="tensorflow")  # not a kept conversion
    model = predictor.model
    height, width = model_image_size(model, model_dir)

    def loop_step():
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB").resize((width, height), Image.BILINEAR))
        model.predict(pixels[None].astype("float32"), verbose=0)

    pixels = images.load_image(path)
    cases = [("`Predictor.predict(path)`", lambda: predictor.predict(path)),
             ("`Predictor.predict(array)`", lambda: predictor.predict(pixels)),
             ("PIL + `model.predict` (one picture)", loop_step)]
    rows = []
    for name, step in cases:
        step()  # warm-up: tracing, first-call allocations
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        rows.append((name, statistics.median(times)))
    return rows


def limited_folder(folder, limit):
    """`folder`, or a temporary folder of links to its first `limit` pictures."""
    from retrain.data import images

    paths = images.list_image_files(folder)
    if not limit or limit >= len(paths):
        return folder
    dest = tempfile.mkdtemp(prefix="bench_predict_")
    for path in paths[:limit]:
        link = os.path.join(dest, os.path.relpath(path, folder))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.abspath(path), link)
    return dest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported model folder")
    parser.add_argument("--digits_dir", default=DEFAULT_DIGITS,
                        help="where the digits folder is (written if missing)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N pictures (0: all 1,797)")
    parser.add_argument("--repeats", type=int, default=50,
                        help="timed calls per single-picture case")
    parser.add_argument("--photos", type=int, default=0,
                        help="use N phone-size JPEGs instead of the digits (0: digits)")
    parser.add_argument("--before", default=None,
                        help="a checkout of earlier kapps code whose `kapps predict` runs too")
    parser.add_argument("--export", action="append", default=[],
                        help="also time `kapps predict` on this .tflite/.onnx of the model")
    parser.add_argument("--flags", action="append", default=[],
                        help="also time `kapps predict` with these flags added (quoted)")
    parser.add_argument("--naive_loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run `kapps predict` on the folder (and the --before code) this "
                             "many times, alternating, and report the median")
    parser.add_argument("--one", type=int, default=0, metavar="N",
                        help="also time `kapps predict` on one picture as a whole command, "
                             "N times (alternating with --before)")
    parser.add_argument("folder", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from retrain import demo
    from retrain.data import images

    if args.naive_loop:  # the one-at-a-time command, run in its own process by compare_folder
        print(json.dumps(naive_loop(args.model, images.list_image_files(args.folder))))
        return 0

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    args.model = os.path.abspath(args.model)  # the `--before` command runs in another folder
    if args.photos:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_photos import write_photos

        folder = write_photos(count=args.photos)
    else:
        folder = limited_folder(demo.write_digits_folder(args.digits_dir), args.limit)
    rows, agreement = compare_folder(args.model, folder, env, args.before, args.export,
                                     args.flags, args.rounds)
    print(f"Model: `{os.path.basename(os.path.normpath(args.model))}`; "
          f"{os.cpu_count()} CPU cores; whole commands, start-up and model load included"
          + (f"; `kapps predict` rows: median of {args.rounds} alternating runs" if args.rounds > 1
             else "") + ".\n")
    print("| method | pictures | seconds | pictures/s |")
    print("|---|---:|---:|---:|")
    for name, count, seconds in rows:
        print(f"| {name} | {count} | {seconds:.1f} | {count / seconds:.1f} |")
    for name, count, seconds in rows[1 + bool(args.before):-1]:
        print(f"Speed-up of {name}: {rows[-1][2] / seconds:.1f}x")
    print(f"\nSpeed-up: {rows[-1][2] / rows[0][2]:.1f}x"
          + (f" ({rows[-1][2] / rows[1][2]:.1f}x with the `--before` code)" if args.before else "")
          + "; "
          f"top-1 agreement between the two: {agreement:.1%}\n")

    first = images.list_image_files(folder)[0]
    if args.one:
        print(f"| one picture, whole command (median of {args.one}) | seconds |")
        print("|---|---:|")
        for name, seconds in one_picture_commands(args.model, first, env, args.before, args.one):
            print(f"| {name} | {seconds:.2f} |")
        print()
    print(f"| one picture, model loaded ({args.repeats} calls) | median ms |")
    print("|---|---:|")
    for name, seconds in single_latency(args.model, first, args.repeats):
        print(f"| {name} | {seconds * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
