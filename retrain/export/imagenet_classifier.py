"""An ImageNet classifier as a kapps model folder, for `kapps predict`, `export` and `serve`.

A network with its 1,000-class ImageNet top becomes what a retrain exports: raw pixels
in (resizing and the architecture's preprocessing are layers inside), `labels.txt`
with ImageNet's class names, `metrics.json` saying what it is. So a user checks real
ImageNet weights on their own photos with the commands they already know, and every
export format and the server take it unchanged.
"""
import os

import keras
from keras import layers

import kapps
from kapps.errors import UserError
from kapps.imagenet import DEFAULT_ARCHITECTURE, class_names
from kapps.pth import PthError
from kapps.registry import get_model_info
from kapps.weights import WeightsNotFoundError
from retrain.common import atomic
from retrain.common import files
from retrain.export.folder import keep_previous_export, moved_line, write_labels
from retrain.formats.keras_model import save_model


def build_imagenet_classifier(architecture=DEFAULT_ARCHITECTURE, model_dir=None):
    """Raw RGB pixels (any size) in, 1,000 ImageNet scores out, with the ImageNet weights
    of `architecture`; a `UserError` saying how to get them when they are missing."""
    info = get_model_info(architecture)
    if not info.imagenet_files:
        raise UserError(f"--architecture {info.name} has no ImageNet weights; pick one of "
                        "the architectures `kapps models` lists with ImageNet weights.")
    try:
        network = kapps.create_model(info.name, include_top=True, weights="imagenet",
                                     model_dir=model_dir)
    except (WeightsNotFoundError, FileNotFoundError, PthError) as err:
        message = (err.message(command_line=True, scratch=False)
                   if isinstance(err, WeightsNotFoundError) else str(err))
        raise UserError(message) from None
    size = int(network.inputs[0].shape[1])
    inputs = keras.Input(shape=(None, None, 3), name="pixels")
    x = layers.Resizing(size, size, name="resize")(inputs)
    x = kapps.preprocessing_layer(info.preprocessing)(x)
    return keras.Model(inputs, network(x), name=f"imagenet_{info.name}")


def write_imagenet_classifier(output_dir, architecture=DEFAULT_ARCHITECTURE, model_dir=None,
                              verbose=0):
    """Write the model folder (an earlier export there is moved to `previous/<time>/`,
    with a line saying so when `verbose`)."""
    model = build_imagenet_classifier(architecture, model_dir)
    os.makedirs(output_dir, exist_ok=True)
    kept = keep_previous_export(output_dir)
    if kept and verbose:
        print(moved_line(output_dir, kept))
    save_model(model, os.path.join(output_dir, files.MODEL_FILE))
    write_labels(class_names(), os.path.join(output_dir, files.LABELS_FILE))
    size = int(model.get_layer("resize").height)
    atomic.write_json(os.path.join(output_dir, files.METRICS_FILE), {
        "imagenet_classifier": True, "classes": len(class_names()),
        "config": {"architecture": get_model_info(architecture).name, "weights": "imagenet",
                   "image_size": size, "fine_tune": "none"}})
    return output_dir
