"""Where a model's files are: a model folder or file resolved to its kind, model file,
labels file and folder, read before anything loads (no TensorFlow here)."""
import os

from kapps.errors import UserError
from retrain.common.files import (GRAPH_FILE, LABELS_FILE, MODEL_FILE, SAVED_MODEL_LABELS,
                                  SAVED_MODEL_PB)


def read_labels(path):
    """Class names from a UTF-8 file, one a line in output order; blank lines are skipped."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            labels = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise UserError(f"labels file not found: {path}; pass --labels the labels.txt "
                        "written with the model") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder, no permission, not UTF-8
        reason = getattr(err, "strerror", None) or err
        raise UserError(f"cannot read labels file {path} ({reason}); pass --labels the "
                        "labels.txt written with the model") from None
    if not labels:
        raise UserError(f"labels file {path} is empty; it needs one class name a line")
    return labels


# Model files by how their name ends.
_SUFFIXES = {".keras": "keras", ".pb": "graph", ".tflite": "litert", ".onnx": "onnx"}
_ACCEPTED = ("an exported folder, a .keras, graph.pb, .tflite or .onnx file, or a "
             "SavedModel folder")


def _saved_model_dir(folder):
    """`folder` if it holds a SavedModel, else its highest numbered version (TF Serving's
    layout, `NAME/1/saved_model.pb`) that does, else None."""
    if os.path.isfile(os.path.join(folder, SAVED_MODEL_PB)):
        return folder
    versions = [name for name in os.listdir(folder) if name.isdigit()
                and os.path.isfile(os.path.join(folder, name, SAVED_MODEL_PB))]
    return os.path.join(folder, max(versions, key=int)) if versions else None


def resolve(model, labels):
    """(kind, model path, labels file, folder) for a model folder or file; kind is a key of
    `retrain.prediction.backends.BACKENDS`."""
    model = os.fspath(model)
    if os.path.isdir(model):
        folder = model
        if os.path.isfile(os.path.join(folder, MODEL_FILE)):
            kind, path = "keras", os.path.join(folder, MODEL_FILE)
        elif os.path.isfile(os.path.join(folder, GRAPH_FILE)):
            kind, path = "graph", os.path.join(folder, GRAPH_FILE)
        elif saved_model := _saved_model_dir(folder):
            kind, path = "saved_model", saved_model
            inside = os.path.join(saved_model, SAVED_MODEL_LABELS)
            if not labels and os.path.isfile(inside):
                labels = inside
        else:
            raise UserError(f"model folder {model} has no {MODEL_FILE}, {GRAPH_FILE} or "
                            f"{SAVED_MODEL_PB}; pass --model {_ACCEPTED}")
    elif os.path.isfile(model):
        folder, path = os.path.dirname(model), model
        kind = _SUFFIXES.get(os.path.splitext(model)[1].lower())
        if kind is None:
            raise UserError(f"model {model} is not a model file kapps reads; pass --model "
                            f"{_ACCEPTED}")
        if kind == "graph" and os.path.basename(model) == SAVED_MODEL_PB:
            return resolve(folder, labels)
    else:
        raise UserError(f"model not found: {model}; pass --model {_ACCEPTED}")
    return kind, path, os.fspath(labels) if labels else os.path.join(folder, LABELS_FILE), folder
