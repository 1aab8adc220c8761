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
from retrain.common import atomic
from retrain.prediction.backends import import_runtime
from retrain.common import files

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
                        f"{', '.join(FORMATS)} (a .tflite file is --format litert)")
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
    """(calibration, held-out) pictures of the training split (never validation or test),
    up to `CALIBRATION_PICTURES` each, balanced across classes: every other picture of a
    class to each list, the classes taken in turn. int8 calibrates on the first and checks
    its agreement with model.keras on the second."""
    from retrain.formats.litert import CALIBRATION_PICTURES

    paths, labels = _split_pictures(folder, "train")
    if not paths:
        raise UserError(f"--quantize int8 calibrates on the training pictures that "
                        f"{os.path.join(folder, files.SPLIT_FILE)} lists, and none were found "
                        f"where {files.METRICS_FILE} says they are; put the image folder back "
                        "or use --quantize dynamic")
    by_class = {}
    for path, label in zip(paths, labels):
        by_class.setdefault(label, []).append(path)

    def in_turns(groups):  # one picture of each class in turn, so a cap keeps the balance
        return [group[i] for i in range(max(map(len, groups), default=0))
                for group in groups if i < len(group)]

    groups = list(by_class.values())
    return (in_turns([g[0::2] for g in groups])[:CALIBRATION_PICTURES],
            in_turns([g[1::2] for g in groups])[:CALIBRATION_PICTURES])


def _calibration(chosen, size):
    """A function yielding the pictures `chosen` one at a time, float32
    [1, height, width, 3], decoded and resized as training does (`retrain.data.inputs.decode`)."""
    import tensorflow as tf

    from retrain.data.inputs import decode

    def pictures():
        dataset = tf.data.Dataset.from_tensor_slices(chosen).map(
            lambda path: tf.image.resize(decode(path), size)[tf.newaxis])
        for batch in dataset:
            yield batch.numpy()

    return pictures


def _agreement_on(reference, held_out, labels_path, size):
    """A function `(tflite bytes) -> top-1 agreement with `reference` on the `held_out`
    pictures`. They are decoded once, as prediction decodes them for `size` (a JPEG at
    its reduced scale), and every candidate of int8's search gets the same pixels."""
    import tempfile

    import numpy as np

    from retrain.prediction.backends import load_picture
    from retrain.data.images import ImageError
    from retrain.prediction.predictor import Predictor

    pixels = []
    for path in held_out:
        try:
            pixels.append(load_picture(path, max(size)))
        except ImageError:  # broken since training: left out, as the test split's are
            continue
    expected = np.stack(reference.scores(pixels)).argmax(1)

    def agreement(model_bytes):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "candidate.tflite")
            with open(path, "wb") as f:
                f.write(model_bytes)
            got = np.stack(Predictor(path, labels=labels_path).scores(pixels)).argmax(1)
        return float(np.mean(got == expected))

    return agreement


def disk_size(path):
    """Bytes a file, or every file under a folder, takes."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def verdict(row):
    """One line on a quantized export against model.keras on the test split, saying
    plainly when it breaks the promise (`int8.AGREEMENT_TARGET` agreement, at most
    `int8.ACCURACY_DROP` accuracy lost) and what to do; None for float exports."""
    from retrain.formats.int8 import ACCURACY_DROP, AGREEMENT_TARGET

    if not row.get("quantize"):
        return None
    name, agree = f"{row['file']} ({row['quantize']})", row["top1_agreement"]
    if agree is None:
        return f"{name}: not measured (no test pictures found)."
    acc, ref = row["test_accuracy"], row["keras_test_accuracy"]
    line = (f"{name}: top-1 agreement with model.keras {100 * agree:.2f}%, test accuracy "
            f"{100 * acc:.2f}% (model.keras {100 * ref:.2f}%) on {row['test_pictures']} "
            "test pictures")
    if row.get("float_layers"):
        line += f"; {len(row['float_layers'])} layer(s) kept in float"
    if agree >= AGREEMENT_TARGET and ref - acc <= ACCURACY_DROP:
        return line + ": keeps the promise."
    remedy = ("try --quantize float16 or dynamic, or more training pictures to calibrate on"
              if row["quantize"] == "int8" else "use the float32 export (no --quantize)")
    return (line + f": BELOW the promise ({100 * AGREEMENT_TARGET:g}% agreement, at most "
            f"{100 * ACCURACY_DROP:g} points of accuracy lost); {remedy}.")


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


def export_model(model, format, quantize=None, output=None, log=None):
    """Export the classifier of a `kapps retrain` folder to `format`; returns its report row.

    Args:
        model: the export folder (or its `model.keras`); its `labels.txt`, and for the
            report and int8 calibration its `split.json` and `metrics.json`, are read.
        format: `saved_model`, `litert` or `onnx`.
        quantize: for `litert`: `dynamic`, `float16` or `int8` (calibrated on training
            pictures). Defaults to `None` (float32).
        output: the file or folder to write. Defaults to a name in the export folder
            (`saved_model/`, `model.tflite`, `model_int8.tflite`, `model.onnx`).
        log: a function taking a line of progress (int8's layer search), or None.

    Returns:
        A dict: `file`, `format`, `quantize`, `size_bytes`, and measured on the test
        split, `test_pictures`, `test_accuracy`, `keras_test_accuracy`,
        `top1_agreement` and `max_score_difference`; for int8 also what
        `retrain.formats.int8` chose (`float_layers`, held-out agreements, sizes and
        latencies of plain int8 and of the chosen file).
    """
    from retrain.prediction.backends.keras_backend import model_image_size
    from retrain.prediction.predictor import Predictor

    check_request(format, quantize)
    require_packages(format)
    int8 = {}
    folder, keras_path = model_source(model)
    output = os.fspath(output) if output else default_output(folder, format, quantize)
    reference = Predictor(keras_path, runtime="tensorflow")  # what the export is measured by
    size = tuple(int(n) for n in model_image_size(reference.model, folder))
    if format == "saved_model":
        from retrain.formats.saved_model import write_saved_model

        write_saved_model(reference.model, output, size, reference.labels_path)
    elif format == "litert" and quantize == "int8":
        from retrain.formats.int8 import layer_name, write_int8

        calibrate, held_out = calibration_paths(folder)
        held_out = held_out or calibrate
        chosen = write_int8(reference.model, output, size, _calibration(calibrate, size),
                            _agreement_on(reference, held_out, reference.labels_path, size),
                            log=log)
        int8 = {"calibration_pictures": len(calibrate), "held_out_pictures": len(held_out),
                "held_out_agreement": chosen.agreement,
                "plain_int8_held_out_agreement": chosen.plain_agreement,
                "float_layers": [layer_name(t) for t in chosen.float_layers],
                "float_tensors": chosen.float_layers,
                "float_layer_rule": chosen.rule,
                "float_layer_steps": [list(step) for step in chosen.steps],
                "plain_int8_size_bytes": chosen.plain_size,
                "plain_int8_latency_ms": round(chosen.plain_latency_ms, 3),
                "latency_ms": round(chosen.latency_ms, 3)}
    elif format == "litert":
        from retrain.formats.litert import write_litert

        write_litert(reference.model, output, size, quantize)
    else:
        from retrain.formats.onnx import write_onnx

        write_onnx(reference.model, output, size)
    beside = os.path.join(os.path.dirname(os.path.abspath(output)), files.LABELS_FILE)
    if beside != os.path.abspath(reference.labels_path):
        with open(reference.labels_path, "rb") as f:
            atomic.write_bytes(beside, f.read())
    exported = Predictor(output, labels=reference.labels_path)
    row = {"file": os.path.basename(os.path.normpath(output)), "format": format,
           "quantize": quantize, "size_bytes": disk_size(output),
           **_measure(reference, exported, folder), **int8}
    _write_report(output, row)
    return row
