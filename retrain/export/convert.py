"""`export_model`: a finished run's `model.keras` as a SavedModel, a LiteRT or an ONNX
file, checked against it on the run's own test pictures.

Each export is written atomically, gets `labels.txt` beside it, and a row in
`export_report.json` beside it (format, size on disk, test accuracy, top-1 agreement
with `model.keras`, largest score difference), so the numbers that decide whether a
quantized file is good enough travel with the file.
"""
import json
import os

from kapps.errors import UserError
from retrain import atomic
from retrain.backends import import_runtime
from retrain.export import files

# format -> quantize modes it has (None, float32, always) and the packages it needs
# (module, kapps extra): the converter and the runtime that checks the result.
FORMATS = {
    "saved_model": ((), ()),
    "litert": (files.LITERT_QUANTIZE, (("ai_edge_litert.interpreter", "litert"),)),
    "onnx": ((), (("tf2onnx", "onnx"), ("onnx", "onnx"), ("onnxruntime", "onnx"))),
}


def check_request(format, quantize=None):
    """`UserError` unless `format` is known and `quantize` means something for it."""
    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not a format kapps exports; pass one of "
                        f"{', '.join(FORMATS)}")
    modes = FORMATS[format][0]
    if quantize is not None and quantize not in modes:
        fix = (f"pass one of {', '.join(modes)}" if modes
               else "leave --quantize out (only --format litert is quantized)")
        raise UserError(f"--quantize {quantize} has no meaning for --format {format}; {fix}")


def require_packages(format):
    """`UserError` naming the kapps extra to install unless `format`'s packages import."""
    for module, extra in FORMATS[format][1]:
        import_runtime(module, extra, f"--format {format}")


def default_output(folder, format, quantize=None):
    """Where an export of `folder` goes when no --output is given."""
    name = {"saved_model": files.SAVED_MODEL_DIR, "onnx": files.ONNX_FILE}.get(
        format) or files.litert_file(quantize)
    return os.path.join(folder, name)


def model_source(model):
    """(folder, model.keras path) of an export folder or of a `.keras` file in one."""
    model = os.fspath(model)
    path = os.path.join(model, files.MODEL_FILE) if os.path.isdir(model) else model
    if not (path.endswith(".keras") and os.path.isfile(path)):
        raise UserError(f"--model {model}: no {files.MODEL_FILE} there; pass the folder "
                        "`kapps retrain` exported (or its .keras file)")
    return os.path.dirname(path), path


def _split_pictures(folder, split):
    """(paths, class indices) of the pictures of `split` listed in the folder's split.json,
    read from the image folder its metrics.json names; ([], []) if either is missing."""
    try:
        with open(os.path.join(folder, files.SPLIT_FILE), encoding="utf-8") as f:
            listed = json.load(f).get(split, [])
        with open(os.path.join(folder, files.METRICS_FILE), encoding="utf-8") as f:
            image_dir = json.load(f)["config"]["image_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return [], []
    with open(os.path.join(folder, files.LABELS_FILE), encoding="utf-8-sig") as f:
        classes = {line.strip(): i for i, line in enumerate(f) if line.strip()}
    pairs = [(os.path.join(image_dir, rel), classes.get(rel.split("/")[0])) for rel in listed]
    pairs = [(path, label) for path, label in pairs if os.path.isfile(path) and label is not None]
    return [p for p, _ in pairs], [label for _, label in pairs]


def calibration_paths(folder):
    """Up to `CALIBRATION_PICTURES` pictures of the training split (never validation or
    test), spread over every class: split.json lists them class by class."""
    from retrain.export.litert import CALIBRATION_PICTURES

    paths, _ = _split_pictures(folder, "train")
    if not paths:
        raise UserError(f"--quantize int8 calibrates on the training pictures that "
                        f"{os.path.join(folder, files.SPLIT_FILE)} lists, and none were found "
                        f"where {files.METRICS_FILE} says they are; put the image folder back "
                        "or use --quantize dynamic")
    return paths[::max(1, len(paths) // CALIBRATION_PICTURES)][:CALIBRATION_PICTURES]


def _calibration(folder, size):
    """A function yielding the `calibration_paths` pictures one at a time, float32
    [1, height, width, 3], decoded and resized as training does (`retrain.inputs.decode`)."""
    import tensorflow as tf

    from retrain.inputs import decode

    chosen = calibration_paths(folder)

    def pictures():
        dataset = tf.data.Dataset.from_tensor_slices(chosen).map(
            lambda path: tf.image.resize(decode(path), size)[tf.newaxis])
        for batch in dataset:
            yield batch.numpy()

    return pictures


def disk_size(path):
    """Bytes a file, or every file under a folder, takes."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def _measure(reference, exported, folder):
    """The report row of `exported` against `reference` (Predictors) on the test split."""
    import numpy as np

    paths, truth = _split_pictures(folder, "test")
    row = {"test_pictures": 0, "test_accuracy": None, "keras_test_accuracy": None,
           "top1_agreement": None, "max_score_difference": None}
    pairs = [(a, b, t) for a, b, t in zip(reference.scores(paths), exported.scores(paths), truth)
             if not isinstance(a, str) and not isinstance(b, str)]
    if not pairs:
        return row
    ref = np.stack([a for a, _, _ in pairs])
    out = np.stack([b for _, b, _ in pairs])
    truth = np.array([t for _, _, t in pairs])
    return {"test_pictures": len(pairs),
            "test_accuracy": float(np.mean(out.argmax(1) == truth)),
            "keras_test_accuracy": float(np.mean(ref.argmax(1) == truth)),
            "top1_agreement": float(np.mean(out.argmax(1) == ref.argmax(1))),
            "max_score_difference": float(np.abs(out - ref).max())}


def _write_report(output, row):
    """Add `row` under the export's name to `export_report.json` beside it."""
    path = os.path.join(os.path.dirname(os.path.abspath(output)), files.EXPORT_REPORT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = {}
    report[os.path.basename(os.path.normpath(output))] = row
    atomic.write_json(path, report)
    return path


def export_model(model, format, quantize=None, output=None):
    """Export the classifier of a `kapps retrain` folder to `format`; returns its report row.

    Args:
        model: the export folder (or its `model.keras`); its `labels.txt`, and for the
            report and int8 calibration its `split.json` and `metrics.json`, are read.
        format: `saved_model`, `litert` or `onnx`.
        quantize: for `litert`: `dynamic`, `float16` or `int8` (calibrated on training
            pictures). Defaults to `None` (float32).
        output: the file or folder to write. Defaults to a name in the export folder
            (`saved_model/`, `model.tflite`, `model_int8.tflite`, `model.onnx`).

    Returns:
        A dict: `file`, `format`, `quantize`, `size_bytes`, and measured on the test
        split, `test_pictures`, `test_accuracy`, `keras_test_accuracy`,
        `top1_agreement` and `max_score_difference`.
    """
    from retrain.backends.keras_backend import model_image_size
    from retrain.predict import Predictor

    check_request(format, quantize)
    require_packages(format)
    folder, keras_path = model_source(model)
    output = os.fspath(output) if output else default_output(folder, format, quantize)
    reference = Predictor(keras_path, runtime="tensorflow")  # what the export is measured by
    size = tuple(int(n) for n in model_image_size(reference.model, folder))
    if format == "saved_model":
        from retrain.export.saved_model import write_saved_model

        write_saved_model(reference.model, output, size, reference.labels_path)
    elif format == "litert":
        from retrain.export.litert import write_litert

        calibration = _calibration(folder, size) if quantize == "int8" else None
        write_litert(reference.model, output, size, quantize, calibration)
    else:
        from retrain.export.onnx import write_onnx

        write_onnx(reference.model, output, size)
    beside = os.path.join(os.path.dirname(os.path.abspath(output)), files.LABELS_FILE)
    if beside != os.path.abspath(reference.labels_path):
        with open(reference.labels_path, "rb") as f:
            atomic.write_bytes(beside, f.read())
    exported = Predictor(output, labels=reference.labels_path)
    row = {"file": os.path.basename(os.path.normpath(output)), "format": format,
           "quantize": quantize, "size_bytes": disk_size(output),
           **_measure(reference, exported, folder)}
    _write_report(output, row)
    return row
