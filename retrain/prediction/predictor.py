"""Top-k answers for new pictures from an exported model.

`Predictor` loads a model once and answers many calls: an exported folder
(`model.keras` + `labels.txt` + `metrics.json`), a `.keras` file with its labels, a
legacy frozen `graph.pb` (TF1 retrain.py format), or what `kapps export` writes (a
SavedModel folder, a `.tflite`, an `.onnx`), with labels beside it. The exported
model carries its own preprocessing, so prediction only decodes (and resizes) pictures;
on a `.tflite` or `.onnx` it imports neither TensorFlow nor Keras.

Each model format has its backend in `retrain.prediction.backends`. A picture that cannot be
decoded gets an `error` in its result and the others are still answered.
"""
import dataclasses
import os
from typing import List, NamedTuple, Optional

import numpy as np

from kapps.errors import UserError
from retrain.prediction import runtimes
from retrain.prediction.backends import metrics_image_size, open_backend
from retrain.common.files import RUNTIME_DIR
from retrain.prediction.locate import read_labels, resolve  # noqa: F401  (read_labels: for callers)
from retrain.prediction.translations import check_translations, read_translations, translate_labels

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


# The runtime that runs each kind of model file as it is.
_NATIVE = {"keras": "tensorflow", "graph": "tensorflow", "saved_model": "tensorflow",
           "litert": "litert", "onnx": "onnx"}


def _open(kind, path, folder, batch_size, threads, runtime, pictures):
    """(runtime name, backend) for the model at `path`; see `Predictor`'s `runtime`.

    A `model.keras` may run as a conversion cached in `RUNTIME_DIR` beside it, named
    by the file's content digest: the whole model converted, or the base conversion its
    retrain kept with the head's weights (`retrain.prediction.kept_base`). Looking them up
    reads the file's bytes and imports neither TensorFlow nor Keras, so a kept
    conversion answers without them.
    """
    runtimes.check_runtime(runtime)
    if kind != "keras":
        if runtime not in ("auto", _NATIVE[kind]):
            raise UserError(f"--runtime {runtime} cannot run {path}, which runs on "
                            f"{_NATIVE[kind]}: only a model.keras is converted; pass --runtime "
                            f"auto or {_NATIVE[kind]}")
        return _NATIVE[kind], open_backend(kind, path, folder, batch_size, threads)
    paths, kept = {}, {}
    if runtime != "tensorflow":
        from retrain.prediction import kept_base
        from retrain.data.images import file_digest

        stem, runtime_dir = file_digest(path)[:16], os.path.join(folder, RUNTIME_DIR)
        paths = {name: runtimes.converted_path(runtime_dir, stem, name)
                 for name in runtimes.CONVERTED}
        kept = {name: (kept_base.base_file(runtime_dir, stem, name),
                       kept_base.head_file(runtime_dir, stem)) for name in runtimes.CONVERTED}
    chosen = runtimes.choose(runtime, pictures, runtimes.PREDICT_CROSSOVER,
                             {name: os.path.isfile(p) or all(map(os.path.isfile, kept[name]))
                              for name, p in paths.items()})
    if chosen != "tensorflow":
        backend = runtimes.load_converted(chosen, paths[chosen], batch_size, threads) \
            or _base_and_head(chosen, *kept[chosen], batch_size, threads)
        if backend is not None:
            return chosen, backend
    keras_backend = open_backend(kind, path, folder, batch_size, threads)
    if chosen != "tensorflow":
        from retrain.prediction.backends.keras_backend import model_image_size

        model = keras_backend.model
        size = model_image_size(model, folder)
        backend = runtimes.make_converted(
            chosen, paths[chosen], lambda p: runtimes.convert(model, p, size, chosen), path,
            "predicting", batch_size, threads)
        if backend is not None:
            _forget_stale_conversions(os.path.dirname(paths[chosen]), os.path.dirname(path))
            return chosen, backend
    return "tensorflow", keras_backend


def _base_and_head(runtime, base_path, head_path, batch_size, threads):
    """The kept base on `runtime` with the NumPy head, or None if they are not both there
    and whole (a damaged pair is removed, as a damaged conversion is)."""
    from retrain.prediction.backends.base_head import BaseHeadBackend

    if not (os.path.isfile(base_path) and os.path.isfile(head_path)):
        return None
    base = runtimes.load_converted(runtime, base_path, batch_size, threads)
    if base is not None:
        try:
            return BaseHeadBackend(base, head_path)
        except (OSError, ValueError, KeyError):
            pass
    for damaged in (base_path, head_path):
        try:
            os.remove(damaged)
        except OSError:
            pass
    return None


def _forget_stale_conversions(runtime_dir, folder):
    """Remove the conversions in `runtime_dir` made from contents that no `.keras` file
    in `folder` has any more (a model retrained, or replaced by other means): named by
    a content digest, they can never be used again. Runs after a new conversion only,
    which costs seconds; reading the `.keras` files costs milliseconds."""
    from retrain.data.images import file_digest

    current = {file_digest(os.path.join(folder, name))[:16] for name in os.listdir(folder)
               if name.endswith(".keras") and os.path.isfile(os.path.join(folder, name))}
    suffixes = tuple(runtimes.CONVERTED[name][3] for name in runtimes.CONVERTED) + (".npz",)
    for name in os.listdir(runtime_dir):
        stem, suffix = os.path.splitext(name)
        stem = stem.removesuffix("-base").removesuffix("-head")
        if suffix in suffixes and len(stem) == 16 and stem not in current:
            try:
                os.remove(os.path.join(runtime_dir, name))
            except OSError:  # in use or read-only: harmless, it is only never used
                pass


def check_model(model, labels=None):
    """`UserError` now, without loading anything, if `model` is not a model kapps reads
    (missing, or an unknown kind of file)."""
    resolve(model, labels)


def side_for_tensorflow(model, runtime="auto"):
    """The side a `model.keras` will decode pictures for on TensorFlow, read from its
    metrics.json without TensorFlow, or None: another kind of model, a conversion kept
    beside it (which `auto` would run), or no side written down. `kapps predict` decodes
    its pictures at that side while TensorFlow starts (`retrain.data.decode_ahead`)."""
    try:
        kind, _, _, folder = resolve(model, None)
    except UserError:
        return None  # Predictor says what is wrong, in its words
    kept = os.path.join(folder, RUNTIME_DIR)
    if kind != "keras" or runtime not in ("auto", "tensorflow") or (
            runtime == "auto" and os.path.isdir(kept) and os.listdir(kept)):
        return None
    size = metrics_image_size(folder)
    return max(size) if size else None


class Predictor:
    """Load a model once, then answer `predict` calls.

    Args:
        model: an exported folder (`model.keras` + `labels.txt`), a `.keras` file, a
            folder with a legacy `graph.pb`, a `.pb` file, a SavedModel folder, a
            `.tflite` or an `.onnx` file.
        labels: the labels file; defaults to `labels.txt` beside the model (in a
            SavedModel: its `assets/labels.txt`).
        translations: a translations file path or a dict {label: translation}.
        batch_size: pictures per network call for many pictures. Defaults to `32`.
        threads: threads of the runtime: LiteRT, ONNX Runtime, or TensorFlow's pools
            when this starts TensorFlow. Defaults to every core.
        runtime: what runs a `model.keras`: `tensorflow`, `litert` or `onnx` (a
            float32 conversion, cached in `.runtime/` beside the model, scores within
            1e-4 of TensorFlow's), or `auto`: a cached conversion if there is one, a new
            one if `pictures` is at least `retrain.prediction.runtimes.PREDICT_CROSSOVER`, else
            TensorFlow. A failed conversion falls back to TensorFlow, saying so on one
            line. Other model files run on their own runtime. Defaults to `auto`.
        pictures: how many pictures this predictor will answer, if known (`auto`).
    """

    def __init__(self, model, labels=None, translations=None, batch_size=DEFAULT_BATCH_SIZE,
                 threads=None, runtime="auto", pictures=None):
        kind, self.model_path, self.labels_path, folder = resolve(model, labels)
        self.labels = read_labels(self.labels_path)
        if isinstance(translations, (str, os.PathLike)):
            path = translations
            translations, bad = read_translations(path)
            check_translations(path, self.labels, translations, bad)
        self.translations = translate_labels(self.labels, translations or {})
        self.runtime, self._backend = _open(kind, self.model_path, folder, batch_size, threads,
                                            runtime, pictures)
        self.answered_by = _answered_by(kind, self.runtime, self._backend)
        num_classes = self._backend.num_classes
        if num_classes is not None and num_classes != len(self.labels):
            raise UserError(f"labels file {self.labels_path} has {len(self.labels)} classes but "
                            f"model {self.model_path} outputs {num_classes}; pass --labels the "
                            "labels.txt written with this model")

    @property
    def model(self):
        """The loaded Keras model, or None for the other formats and runtimes."""
        return getattr(self._backend, "model", None)

    @property
    def min_side(self):
        """The side a JPEG is decoded to keep (`retrain.data.images.jpeg_scale`), as training did:
        callers that decode pictures themselves (the server) pass it to the decoder."""
        return getattr(self._backend, "min_side", None)

    def scores(self, inputs):
        """Per input, the softmax scores over all classes, or an error string."""
        return self._backend.run(list(inputs))

    @property
    def input_size(self):
        """(height, width) that `scores_resized` takes, or None where the model cannot take
        pictures resized ahead (a frozen graph, a model that crops while resizing)."""
        return getattr(self._backend, "input_size", None)

    def scores_resized(self, pixels):
        """Per picture, the softmax scores, for float32 pixels already resized to
        `input_size` by `retrain.prediction.backends.resize.resize_bilinear`: the same scores as for
        the decoded picture, holding only the model's input size of each picture."""
        batch_size = self._backend.batch_size
        scores = []
        for start in range(0, len(pixels), batch_size):
            scores.extend(self._backend.infer(np.stack(pixels[start:start + batch_size])))
        return scores

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
        inputs = _picture_list(inputs, top_k)
        return [self._result(item, scores, top_k)
                for item, scores in zip(inputs, self.scores(inputs))]

    def _result(self, item, scores, top_k):
        """The `PictureResult` of one input (a path or an array) for its scores or error."""
        path = None if isinstance(item, np.ndarray) else item
        if isinstance(scores, str):
            return PictureResult(path, error=scores)
        if len(scores) != len(self.labels):
            raise UserError(f"model {self.model_path} outputs {len(scores)} scores but "
                            f"{self.labels_path} has {len(self.labels)} labels")
        best = np.argsort(-scores, kind="stable")[:top_k]
        return PictureResult(path, [
            Prediction(self.labels[i], float(scores[i]), self.translations[i]) for i in best])

    def gradcam(self, layer=None):
        """The `explain.GradCam` that `explain` uses for `layer` (its `layer` names
        the layer found where None), on the `model.keras` loaded on TensorFlow; made once.

        Raises:
            UserError: the model is not a `model.keras`, or has no such layer.
        """
        from retrain.prediction import explain

        explain.check_explainable(self.model_path, self.labels_path)
        if "_explaining_backend" not in self.__dict__:  # a kept conversion answers predict
            self._explaining_backend = self._backend if hasattr(self._backend, "model") else \
                open_backend("keras", self.model_path, os.path.dirname(self.model_path),
                             self._backend.batch_size)
        cams = self.__dict__.setdefault("_gradcams", {})
        if layer not in cams:
            cams[layer] = explain.GradCam(self._explaining_backend.model, layer)
        return cams[layer]

    def explain(self, inputs, layer=None, top_k=DEFAULT_TOP_K):
        """Grad-CAM heatmaps of where the model looked for each picture's top answer
        (`retrain.prediction.explain`), with the answers, from the `model.keras` on TensorFlow
        (loaded for this if another runtime answers `predict`).

        Args:
            inputs: as for `predict`.
            layer: the layer whose feature map is explained, searched in nested models
                too. Defaults to the last one before the global pooling
                (`retrain.prediction.explain.find_layer`).
            top_k: how many answers per picture.

        Returns:
            A list, in input order, of (heatmap, `PictureResult`): the heatmap float32
            (height, width) at the feature map's size, top row first, 0 to 1 (1 where
            the top answer's evidence is strongest), None for a picture that cannot
            be decoded (its result says why).

        Raises:
            UserError: the model is not a `model.keras` (other formats have no
                gradients), or `layer` is not one of its layers with a 4-D output.
            FileNotFoundError: a path does not exist (checked before any work).
        """
        from retrain.prediction.backends import error_text, load_picture
        from retrain.data.images import ImageError

        inputs = _picture_list(inputs, top_k)
        gradcam, backend = self.gradcam(layer), self._explaining_backend
        answers = [None] * len(inputs)
        for start in range(0, len(inputs), backend.batch_size):
            batch, rows = [], []
            for index in range(start, min(start + backend.batch_size, len(inputs))):
                try:
                    pixels = load_picture(inputs[index], backend.min_side)
                except ImageError as err:
                    answers[index] = (None, self._result(inputs[index], error_text(err), top_k))
                    continue
                batch.append(backend._prepare(pixels))
                rows.append(index)
            if batch:
                heatmaps, scores = gradcam(np.stack(batch))
                for index, heatmap, row in zip(rows, heatmaps, scores):
                    answers[index] = (heatmap, self._result(inputs[index], row, top_k))
        return answers


def _answered_by(kind, runtime, backend):
    """Which path answers, in words (`kapps predict --verbose` and its JSON say it)."""
    from retrain.prediction.backends.base_head import BaseHeadBackend

    name = runtimes.NAMES[runtime]
    if isinstance(backend, BaseHeadBackend):
        return f"{name} on the base the retrain kept, then the head in NumPy"
    if kind == "keras" and runtime != "tensorflow":
        return f"{name} on model.keras converted (kept in {RUNTIME_DIR}/)"
    return f"{name} on {kind if kind != 'keras' else 'model.keras'}"


def _picture_list(inputs, top_k):
    """`inputs` (a path, an array, a list of them or an (N, H, W, 3) array) as a list of
    paths and arrays; `FileNotFoundError` naming a path that does not exist."""
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
    return inputs


def missing_paths(inputs):
    """The paths among `inputs` (paths and arrays) that do not exist."""
    return [item for item in inputs if isinstance(item, str) and not os.path.exists(item)]


def predict(model, paths, top_k=DEFAULT_TOP_K, translations=None, labels=None):
    """One call: load `model` (see `Predictor`) and return top-`top_k` results for `paths`."""
    return Predictor(model, labels=labels, translations=translations).predict(paths, top_k)
