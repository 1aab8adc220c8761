"""Prediction backends: one module per model format, each turning pictures into scores.

A backend has `num_classes` and `run(items) -> [scores (classes,) or error string]`,
where an item is a picture path or a uint8 (H, W, 3) array. `open_backend` picks one
by the kind of model file; `retrain.prediction.predictor.Predictor` adds labels and top-k on top.
The LiteRT and ONNX backends import neither TensorFlow nor Keras, only their runtime.
"""
import importlib
import importlib.util
import os

import numpy as np

from kapps.errors import UserError
from retrain.data import decode_ahead

# kind -> (module, class) of its backend; `keras` and `graph` also load TensorFlow.
BACKENDS = {
    "keras": ("retrain.prediction.backends.keras_backend", "KerasBackend"),
    "graph": ("retrain.prediction.backends.graph_backend", "GraphBackend"),
    "saved_model": ("retrain.prediction.backends.saved_model_backend", "SavedModelBackend"),
    "litert": ("retrain.prediction.backends.litert_backend", "LiteRTBackend"),
    "onnx": ("retrain.prediction.backends.onnx_backend", "OnnxBackend"),
}
WITHOUT_TENSORFLOW = ("litert", "onnx")


def as_rgb(array):
    """A picture given as an array, as uint8 (H, W, 3): gray is repeated, alpha dropped."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"A picture array must have shape (height, width[, 1|3|4]). "
                         f"Received shape={array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return array


def load_picture(item, min_side=None):
    """uint8 (H, W, 3) pixels of a path or an array; raises `ImageError` for a bad file.

    A JPEG path decodes at the reduced scale that keeps `min_side` (the model's input
    side), exactly as training decoded it, unless it was decoded so while TensorFlow
    started (`retrain.data.decode_ahead`); an array is taken as it is.
    """
    if isinstance(item, np.ndarray):
        return as_rgb(item)
    return decode_ahead.load(item, min_side)


def metrics_image_size(folder):
    """(height, width) an export's metrics.json gives as its config's image_size, or None
    (no such file or field, or a file that does not parse). Read without TensorFlow."""
    import json

    from retrain.common.files import METRICS_FILE

    try:
        with open(os.path.join(folder, METRICS_FILE), encoding="utf-8") as f:
            size = json.load(f).get("config", {}).get("image_size")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(size, int) and size > 0:
        return size, size
    if isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) for n in size):
        return tuple(size)
    return None


def error_text(err):
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def import_runtime(module, extra, what):
    """Import `module`, which `what` (a model file, a flag) needs, or say which kapps extra
    installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise UserError(f"{what} needs the {package} package, which is not installed; pip "
                        f"install {package.replace('_', '-')} (or kapps' extra: pip install "
                        f"'kapps[{extra}]')") from None


def check_tensorflow(kind, path):
    """`UserError` if the model at `path`, of `kind`, needs TensorFlow and it is not installed
    (as on a small device set up for .tflite or .onnx only); TensorFlow is not imported."""
    if kind not in WITHOUT_TENSORFLOW and importlib.util.find_spec("tensorflow") is None:
        raise UserError(f"{path} needs TensorFlow, which is not installed; pip install "
                        "tensorflow, or predict on an export that does not need it (`kapps "
                        "export --format litert` or `--format onnx`, where TensorFlow is)")


def open_backend(kind, path, folder, batch_size, threads=None):
    """The backend for a model file of `kind` (a key of `BACKENDS`).

    `threads` (default every core) is the runtime's: LiteRT's and ONNX Runtime's, or
    TensorFlow's thread pools when this starts it. The others start TensorFlow's
    devices first, quietly (`kapps.process.start_devices`); LiteRT and ONNX never load
    TensorFlow.
    """
    check_tensorflow(kind, path)
    if kind not in WITHOUT_TENSORFLOW:
        from kapps.process import start_devices

        start_devices(threads)
    module, name = BACKENDS[kind]
    backend = getattr(importlib.import_module(module), name)
    if kind == "keras":
        return backend(path, folder, batch_size, threads)
    if kind == "graph":
        return backend(path)
    return backend(path, batch_size, threads)
