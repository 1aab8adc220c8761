"""`model.keras`: the classifier as Keras saves it, raw RGB pixels in, scores out."""
from retrain.common import atomic


def save_model(model, path):
    """Save `model` to `path` atomically (Keras infers the format from the suffix)."""
    with atomic.atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
