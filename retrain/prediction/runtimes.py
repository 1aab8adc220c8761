"""Which runtime runs a Keras model's forward pass: TensorFlow, or a conversion of it.

Bottleneck extraction (the frozen base over many pictures) and prediction on a
`model.keras` may run a converted copy of the model on LiteRT or ONNX Runtime, which
answer faster per picture than TensorFlow on a CPU, but a conversion costs seconds
(about 20 s for MobileNetV2). So a conversion is cached (the base's beside its
bottlenecks, a `model.keras`'s in `.runtime/` beside it, keyed by its content) and
made only where it pays: `auto` uses a cached conversion whenever there is one, and
converts only for at least the measured crossover number of pictures. TensorFlow
remains the fallback, and a failed conversion says so on one line, never silently.
TensorFlow always trains; converted models answer within 1e-4 of it.

Nothing here imports TensorFlow at module level: prediction with a cached conversion
must not load it.
"""
import importlib.util
import os
import sys

from kapps.errors import UserError
from kapps.process import quiet_stderr

RUNTIMES = ("auto", "tensorflow", "litert", "onnx")
# Names said to users.
NAMES = {"tensorflow": "TensorFlow", "litert": "LiteRT", "onnx": "ONNX Runtime"}
# runtime -> (modules that run a converted file, modules that also convert, kapps extra,
# file suffix); `auto` tries them in this order.
CONVERTED = {
    "litert": (("ai_edge_litert.interpreter",), (), "litert", ".tflite"),
    "onnx": (("onnxruntime",), ("tf2onnx", "onnx"), "onnx", ".onnx"),
}
# Fewest pictures for which converting first and then running LiteRT takes less time
# than running TensorFlow directly ((conversion + fixed costs) / per-picture seconds
# saved), measured by bench/bench_runtime.py (docs/BENCHMARKS.md) on 2 CPU cores shared
# with other work, two runs. Extraction, a no-top MobileNetV2 over tf.data batches of
# 32: LiteRT 1.8-2.0x TensorFlow's speed at 224 px, crossover 500-1,000 pictures; 1.25-2.4x
# at 96 px (decoding weighs more), crossover 2,700-16,000. The saving per picture grows
# with the pixels while the conversion (10-18 s) does not, hence 1,000 at 224 px scaled
# by the pixel count (5,400 at 96 px). Prediction (`Predictor` on a MobileNetV2
# classifier at 224 px): LiteRT 0.9-1.4x, crossover 3,600 or never, hence 4,000; a kept
# conversion pays from the first picture, as it spares TensorFlow's start-up. ONNX
# Runtime was 0.7-1.9x: `auto` tries LiteRT first.
EXTRACT_CROSSOVER_224 = 1000
PREDICT_CROSSOVER = 4000


def extract_crossover(size):
    """The crossover number of pictures for extracting features at `size` px."""
    return max(1, round(EXTRACT_CROSSOVER_224 * (224 / size) ** 2))


def check_runtime(runtime, flag="--runtime"):
    """`UserError` unless `runtime` is one of `RUNTIMES`."""
    if runtime not in RUNTIMES:
        raise UserError(f"{flag} must be one of {', '.join(RUNTIMES)}. Received: {runtime!r}")


def available(runtime, convert):
    """Whether `runtime`'s packages are installed (to convert too, if `convert`); nothing
    is imported."""
    run, converters, _, _ = CONVERTED[runtime]
    modules = run + (converters if convert else ())
    try:
        return all(importlib.util.find_spec(module) is not None for module in modules)
    except (ImportError, ValueError):  # a parent package missing or blocked
        return False


def require(runtime, convert, flag="--runtime"):
    """`UserError` naming the pip package and kapps extra unless `runtime` imports."""
    from retrain.prediction.backends import import_runtime

    run, converters, extra, _ = CONVERTED[runtime]
    for module in run + (converters if convert else ()):
        import_runtime(module, extra, f"{flag} {runtime}")


def choose(runtime, pictures, crossover, cached):
    """The runtime to use: `tensorflow`, `litert` or `onnx`.

    Args:
        runtime: one of `RUNTIMES`; an explicit one is checked to be installed
            (`UserError` if not).
        pictures: how many pictures will be run, or None if not known.
        crossover: the fewest pictures for which converting pays.
        cached: `{runtime: whether a conversion is already cached}`.
    """
    check_runtime(runtime)
    if runtime == "tensorflow":
        return runtime
    if runtime != "auto":
        require(runtime, convert=not cached.get(runtime))
        return runtime
    for name in CONVERTED:
        if cached.get(name) and available(name, convert=False):
            return name
    if pictures is not None and pictures >= crossover:
        for name in CONVERTED:
            if available(name, convert=True):
                return name
    return "tensorflow"


def converted_path(folder, stem, runtime):
    """Where the conversion of `stem` for `runtime` is cached in `folder`."""
    return os.path.join(folder, stem + CONVERTED[runtime][3])


def convert(model, path, size, runtime):
    """Write `model` (float32 raw pixels in) as a float32 `.tflite` or an `.onnx` file
    at `path` that takes pictures of `size` (height, width), atomically and quietly (the
    converters' notices go to a temporary file, shown only if they fail)."""
    if runtime == "litert":
        from retrain.formats.litert import write_litert

        write_litert(model, path, tuple(size))
    else:
        from retrain.formats.onnx import write_onnx

        with quiet_stderr():
            write_onnx(model, path, tuple(size))


def fall_back(what, runtime, err, doing):
    """Say on one line that `what` runs on TensorFlow after all, and why."""
    from retrain.prediction.backends import error_text

    reason = error_text(err)[:200] if str(err).strip() else type(err).__name__
    print(f"warning: could not use {NAMES[runtime]} for {what} ({reason}); {doing} with "
          "TensorFlow", file=sys.stderr)


def load_converted(runtime, path, batch_size, threads=None):
    """The `runtime` backend on the cached conversion at `path`, or None if there is none.

    A cached file that does not load (damaged by something outside kapps) is removed,
    so it is made again.
    """
    from retrain.prediction.backends import open_backend

    if not os.path.isfile(path):
        return None
    try:
        return open_backend(runtime, path, None, batch_size, threads)
    except UserError:
        try:
            os.remove(path)
        except OSError:
            pass
        return None


def make_converted(runtime, path, make, what, doing, batch_size, threads=None):
    """Convert with `make(path)`, then load: the `runtime` backend, or None after one line
    saying that `what` is run (`doing`) with TensorFlow instead, and why."""
    try:
        make(path)
        return load_converted(runtime, path, batch_size, threads) or _unloadable(path)
    except Exception as err:  # noqa: BLE001 (said on one line: converters raise anything)
        fall_back(what, runtime, err, doing)
        return None


def _unloadable(path):
    raise ValueError(f"the converted {os.path.basename(path)} does not load")
