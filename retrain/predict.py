"""Top-k answers for new pictures from an exported model.

`Predictor` loads a model once and answers many calls: an exported folder
(`model.keras` + `labels.txt` + `metrics.json`), a `.keras` file with its labels, or
a legacy frozen `graph.pb` (TF1 retrain.py format) with its labels. The exported
model carries its own resizing and preprocessing, so prediction only decodes pictures.

Folders are predicted in batches, decoding in parallel in a `tf.data` pipeline; a
single picture goes straight to a compiled call, since `model.predict` costs far
more per call than the network itself on one picture. A picture that cannot be
decoded gets an `error` in its result and the others are still answered.
"""
import dataclasses
import io
import json
import os
from typing import List, NamedTuple, Optional

import numpy as np

from retrain import images
from retrain.errors import UserError
from retrain.translations import load_translations, translate_labels

MODEL_FILE = "model.keras"
GRAPH_FILE = "graph.pb"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"

# The frozen-graph interface of TF1's retrain.py: JPEG bytes in, softmax out.
GRAPH_INPUT = "DecodeJpeg/contents:0"
GRAPH_OUTPUT = "final_result:0"

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


def _as_rgb(array):
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


def _load(item):
    """uint8 (H, W, 3) pixels of a path or an array; raises `ImageError` for a bad file."""
    if isinstance(item, np.ndarray):
        return _as_rgb(item)
    return images.load_image(item)


def _error_text(err):
    return str(err).splitlines()[0]


def model_image_size(model, folder):
    """(height, width) pictures are resized to: metrics.json, the `resize` layer, the input."""
    metrics_path = os.path.join(folder, METRICS_FILE)
    if os.path.isfile(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
            size = json.load(f).get("config", {}).get("image_size")
        if size:
            return (size, size) if isinstance(size, int) else tuple(size)
    resize = _resize_layer(model)
    if resize is not None:
        return resize.height, resize.width
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise UserError(f"cannot tell the image size of the model in {folder}: it has no "
                        f"{METRICS_FILE}, `resize` layer or fixed input size; add {METRICS_FILE} "
                        "with config.image_size")
    return height, width


def _resize_layer(model):
    try:
        return model.get_layer("resize")
    except ValueError:
        return None


class _KerasBackend:
    """A `model.keras` whose input is raw RGB pixels; batches go through tf.data."""

    def __init__(self, path, folder, batch_size):
        import tensorflow as tf
        import keras
        import kapps  # noqa: F401  (registers kapps.Preprocess for loading)

        self._tf = tf
        try:
            self.model = keras.saving.load_model(path, safe_mode=True)
        except Exception as err:  # Keras raises many types for a damaged or foreign file.
            raise UserError(f"cannot load model {path}: {_error_text(err) or type(err).__name__}; "
                            "pass --model a model exported by `kapps retrain`") from None
        self.num_classes = int(self.model.output_shape[-1])
        self.batch_size = batch_size
        height, width = model_image_size(self.model, folder)
        # The model's own resize settings (interpolation, cropping) at the batching size, so
        # its `resize` layer then sees the size it produces and leaves the pixels unchanged.
        resize = _resize_layer(self.model)
        config = dict(resize.get_config()) if resize is not None else {}
        config.update(height=height, width=width, name="predict_resize")
        self._resize = keras.layers.Resizing.from_config(config)
        self._call = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)],
            autograph=False)

    def _prepare(self, pixels):
        return self._resize(self._tf.cast(pixels, self._tf.float32))

    def run(self, items):
        """A list with, per item, its scores (num_classes,) or an error string."""
        if not items:
            return []
        if all(isinstance(item, np.ndarray) for item in items):
            return self._run_arrays(items)
        if len(items) == 1:
            try:
                pixels = _load(items[0])
            except images.ImageError as err:
                return [_error_text(err)]
            return [self._call(self._prepare(pixels)[None]).numpy()[0]]
        return self._run_batched(items)

    def _run_arrays(self, arrays):
        """Pictures already in memory: no tf.data pipeline, whose set-up (about 0.1 s a
        call) costs more than scoring a few pictures, as a server's batches are.

        Pictures of one size are resized together; then `batch_size` at a time go
        through the compiled call, in input order.
        """
        arrays = [_as_rgb(array) for array in arrays]
        by_shape = {}
        for index, array in enumerate(arrays):
            by_shape.setdefault(array.shape, []).append(index)
        prepared = [None] * len(arrays)
        for indices in by_shape.values():
            resized = self._prepare(np.stack([arrays[i] for i in indices])).numpy()
            for row, index in enumerate(indices):
                prepared[index] = resized[row]
        scores = []
        for start in range(0, len(prepared), self.batch_size):
            batch = np.stack(prepared[start:start + self.batch_size])
            scores.extend(self._call(batch).numpy())
        return scores

    def _run_batched(self, items):
        tf = self._tf
        errors = {}

        def load(index):
            index = int(index)
            try:
                return _load(items[index])
            except images.ImageError as err:
                errors[index] = _error_text(err)
                return np.zeros((1, 1, 3), np.uint8)  # a stand-in; its scores are dropped

        @tf.autograph.experimental.do_not_convert
        def decode(index):
            pixels = tf.numpy_function(load, [index], tf.uint8, stateful=False)
            pixels.set_shape([None, None, 3])
            return self._prepare(pixels)

        dataset = (tf.data.Dataset.range(len(items))
                   .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(self.batch_size)
                   .prefetch(tf.data.AUTOTUNE))
        scores = np.concatenate([self._call(batch).numpy() for batch in dataset])
        return [errors.get(i, scores[i]) for i in range(len(items))]


class _GraphBackend:
    """A frozen TF1 GraphDef that takes the JPEG bytes of one picture."""

    def __init__(self, path):
        import tensorflow as tf

        self._tf = tf
        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as f:
                graph_def.ParseFromString(f.read())
            self.graph = tf.Graph()
            with self.graph.as_default():
                tf.import_graph_def(graph_def, name="")
            self._input = self.graph.get_tensor_by_name(GRAPH_INPUT)
            self._output = self.graph.get_tensor_by_name(GRAPH_OUTPUT)
        except Exception as err:  # protobuf and TF raise many types for a foreign file.
            raise UserError(f"cannot load frozen graph {path}: {_error_text(err) or type(err).__name__}; "
                            f"it needs input {GRAPH_INPUT} and output {GRAPH_OUTPUT}") from None
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.num_classes = self._output.shape[-1]

    def _scores(self, data):
        return self.session.run(self._output, {self._input: data})[0]

    def run(self, items):
        return [self._run_one(item) for item in items]

    def _run_one(self, item):
        if not isinstance(item, np.ndarray):
            try:
                with open(item, "rb") as f:
                    data = f.read()
            except OSError as err:
                return f"cannot read image {item}: {err.strerror or err}"
            if data[:3] == b"\xff\xd8\xff" and not _rotated(data):
                try:
                    return self._scores(data)
                except self._tf.errors.OpError:
                    pass  # a JPEG TF cannot decode (CMYK, damaged): let Pillow try, or explain
        try:
            return self._scores(_jpeg_bytes(_load(item)))
        except images.ImageError as err:
            return _error_text(err)

    def close(self):
        self.session.close()


def _rotated(jpeg):
    """True if the JPEG's EXIF asks for a rotation or flip, which the graph's decoder ignores."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            return img.getexif().get(0x0112, 1) != 1  # 0x0112: EXIF Orientation
    except (OSError, ValueError, SyntaxError, EOFError):  # the graph's decoder will say why
        return False


def _jpeg_bytes(pixels):
    """uint8 RGB pixels as high-quality JPEG bytes, for a graph that only decodes JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


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
            translations = load_translations(translations)
        self.translations = translate_labels(self.labels, translations or {})
        if kind == "keras":
            self._backend = _KerasBackend(self.model_path, folder, batch_size)
        else:
            self._backend = _GraphBackend(self.model_path)
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
            A list of `PictureResult`, in input order.
        """
        if isinstance(inputs, (str, os.PathLike)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim < 4):
            inputs = [inputs]
        inputs = [item if isinstance(item, np.ndarray) else os.fspath(item) for item in inputs]
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1. Received top_k={top_k}")
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


def predict(model, paths, top_k=DEFAULT_TOP_K, translations=None, labels=None):
    """One call: load `model` (see `Predictor`) and return top-`top_k` results for `paths`."""
    return Predictor(model, labels=labels, translations=translations).predict(paths, top_k)
