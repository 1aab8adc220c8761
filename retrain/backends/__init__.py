"""Prediction backends: one module per model format, each turning pictures into scores.

A backend has `num_classes` and `run(items) -> [scores (classes,) or error string]`,
where an item is a picture path or a uint8 (H, W, 3) array. `open_backend` picks one
by the kind of model file; `retrain.predict.Predictor` adds labels and top-k on top.
"""
import numpy as np

from retrain import images


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
    side), exactly as training decoded it; an array is taken as it is.
    """
    if isinstance(item, np.ndarray):
        return as_rgb(item)
    return images.load_image(item, min_side=min_side)


def error_text(err):
    return str(err).splitlines()[0]




def open_backend(kind, path, folder, batch_size):
    """The backend for a model file of `kind` (`keras` or `graph`)."""
    if kind == "keras":
        from retrain.backends.keras_backend import KerasBackend

        return KerasBackend(path, folder, batch_size)
    from retrain.backends.graph_backend import GraphBackend

    return GraphBackend(path)
