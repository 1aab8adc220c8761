"""Top-k answers for new pictures from an exported model.

`Predictor` loads a model once and answers many calls: an exported folder
(`model.keras` + `labels.txt` + `metrics.json`), a `.keras` file with its labels, or
a legacy frozen `graph.pb` (TF1 retrain.py format) with its labels. The exported
model carries its own resizing and preprocessing, so prediction only decodes pictures.

Each model format has its backend in `retrain.backends`. A picture that cannot be
decoded gets an `error` in its result and the others are still answered.
"""
import dataclasses
import os
from typing import List, NamedTuple, Optional

import numpy as np

from kapps.errors import UserError
from kapps.process import start_devices
from retrain.backends import open_backend
from retrain.export.files import GRAPH_FILE, LABELS_FILE, MODEL_FILE
from retrain.translations import check_translations, read_translations, translate_labels

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 32


class Prediction(NamedTuple):
    """One answer: the label, its softmax score and its translation (the label if none)."""
    label: str
    score: float
    translation: str

    @property
    def display(self):
        """`波斯猫 persian_cat` where a translation differs from the label, else the label."""
        return self.label if self.translation == self.label else f"{self.translation} {self.label}"


@dataclasses.dataclass
class PictureResult:
    """The answers for one picture, best first, or the reason it could not be read.

    `path` is None for a picture given as an array.
    """
    path: Optional[str]
    predictions: List[Prediction] = dataclasses.field(default_factory=list)
    error: Optional[str] = None

    def to_dict(self):
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path,
                "predictions": [{"label": p.label, "translation": p.translation,
                                 "score": p.score} for p in self.predictions]}


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


def _resolve(model, labels):
    """(kind, model file, labels file, folder) for a model folder or file; kind is keras|graph."""
    model = os.fspath(model)
    if os.path.isdir(model):
        folder = model
        if os.path.isfile(os.path.join(folder, MODEL_FILE)):
            kind, path = "keras", os.path.join(folder, MODEL_FILE)
        elif os.path.isfile(os.path.join(folder, GRAPH_FILE)):
            kind, path = "graph", os.path.join(folder, GRAPH_FILE)
        else:
            raise UserError(f"model folder {model} has neither {MODEL_FILE} nor {GRAPH_FILE}; "
                            "pass --model a folder written by `kapps retrain`")
    elif os.path.isfile(model):
        folder, path = os.path.dirname(model), model
        if model.endswith(".keras"):
            kind = "keras"
        elif model.endswith(".pb"):
            kind = "graph"
        else:
            raise UserError(f"model {model} is neither a .keras file nor a frozen .pb graph; "
                            "pass --model an exported folder, a .keras or a .pb file")
    else:
        raise UserError(f"model not found: {model}; pass --model an exported folder "
                        f"({MODEL_FILE} + {LABELS_FILE}) or a .keras file")
    return kind, path, os.fspath(labels) if labels else os.path.join(folder, LABELS_FILE), folder


class Predictor:
    """Load a model once, then answer `predict` calls.

    Args:
        model: an exported folder (`model.keras` + `labels.txt`), a `.keras` file, a
            folder with a legacy `graph.pb`, or a `.pb` file.
        labels: the labels file; defaults to `labels.txt` beside the model.
        translations: a translations file path or a dict {label: translation}.
        batch_size: pictures per network call for many pictures. Defaults to `32`.
    """

    def __init__(self, model, labels=None, translations=None, batch_size=DEFAULT_BATCH_SIZE):
        kind, self.model_path, self.labels_path, folder = _resolve(model, labels)
        self.labels = read_labels(self.labels_path)
        if isinstance(translations, (str, os.PathLike)):
            path = translations
            translations, bad = read_translations(path)
            check_translations(path, self.labels, translations, bad)
        self.translations = translate_labels(self.labels, translations or {})
        start_devices()
        self._backend = open_backend(kind, self.model_path, folder, batch_size)
        num_classes = self._backend.num_classes
        if num_classes is not None and num_classes != len(self.labels):
            raise UserError(f"labels file {self.labels_path} has {len(self.labels)} classes but "
                            f"model {self.model_path} outputs {num_classes}; pass --labels the "
                            "labels.txt written with this model")

    @property
    def model(self):
        """The loaded Keras model, or None for a frozen graph."""
        return getattr(self._backend, "model", None)

    def scores(self, inputs):
        """Per input, the softmax scores over all classes, or an error string."""
        return self._backend.run(list(inputs))

    def predict(self, inputs, top_k=DEFAULT_TOP_K):
        """Top-`top_k` answers for each picture.

        Args:
            inputs: a path, a uint8 (H, W, 3) array, a list of them, or an (N, H, W, 3) array.
            top_k: how many answers per picture (at most the number of classes).

        Returns:
            A list of `PictureResult`, in input order. A picture that exists but cannot
            be decoded gets its reason in `error` (and no predictions); the others are
            still answered.

        Raises:
            FileNotFoundError: a path does not exist (checked before any work).
        """
        if isinstance(inputs, (str, os.PathLike)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim < 4):
            inputs = [inputs]
        inputs = [item if isinstance(item, np.ndarray) else os.fspath(item) for item in inputs]
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1. Received top_k={top_k}")
        missing = missing_paths(inputs)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"no such picture: {missing[0]}{more}; pass the paths of "
                                    "existing picture files or folders")
        results = []
        for item, scores in zip(inputs, self.scores(inputs)):
            path = None if isinstance(item, np.ndarray) else item
            if isinstance(scores, str):
                results.append(PictureResult(path, error=scores))
                continue
            if len(scores) != len(self.labels):
                raise UserError(f"model {self.model_path} outputs {len(scores)} scores but "
                                f"{self.labels_path} has {len(self.labels)} labels")
            best = np.argsort(-scores, kind="stable")[:top_k]
            results.append(PictureResult(path, [
                Prediction(self.labels[i], float(scores[i]), self.translations[i]) for i in best]))
        return results


def missing_paths(inputs):
    """The paths among `inputs` (paths and arrays) that do not exist."""
    return [item for item in inputs if isinstance(item, str) and not os.path.exists(item)]


def predict(model, paths, top_k=DEFAULT_TOP_K, translations=None, labels=None):
    """One call: load `model` (see `Predictor`) and return top-`top_k` results for `paths`."""
    return Predictor(model, labels=labels, translations=translations).predict(paths, top_k)
