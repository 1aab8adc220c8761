"""A frozen base's conversion and its head's weights, kept beside a `model.keras`.

A retrain with a frozen base that ran its feature pass on LiteRT or ONNX Runtime has
already converted the base (`retrain.train.bottlenecks` keeps it with the features). The
head on top is a few Dense layers: at inference a matrix product and a softmax. So the
export keeps both in the model folder's `.runtime/`, named by the content digest of the
`model.keras` they answer for, and prediction runs the base on its runtime and the
head in NumPy (`retrain.prediction.backends.base_head`), without TensorFlow and without
converting anything again. A model retrained or replaced has another digest, so a
kept pair never answers for a model it was not made with.

Nothing here imports TensorFlow or Keras.
"""
import os
import shutil

import numpy as np

from retrain.common import atomic
from retrain.prediction.runtimes import CONVERTED, converted_path

# Dense activations the NumPy head computes; a head with anything else is not kept.
ACTIVATIONS = ("linear", "relu", "softmax")


def base_file(runtime_dir, stem, runtime):
    """The kept base conversion for `runtime` of the model whose digest starts `stem`."""
    return os.path.join(runtime_dir, f"{stem}-base{CONVERTED[runtime][3]}")


def head_file(runtime_dir, stem):
    """The head's weights (`kernel_i`, `bias_i`, `activation_i` per Dense layer)."""
    return os.path.join(runtime_dir, f"{stem}-head.npz")


def head_layers(head):
    """[(kernel, bias, activation)] of a Keras head on feature vectors, in order, or None
    when it holds a layer NumPy would not compute exactly as Keras does (dropout does
    nothing at inference and is skipped)."""
    dense = []
    for layer in head.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout"):
            continue
        config = layer.get_config()
        if kind != "Dense" or config.get("activation") not in ACTIVATIONS \
                or not config.get("use_bias", True):
            return None
        kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
        dense.append((kernel, bias, config["activation"]))
    return dense or None


def keep(model_path, cache_folder, head):
    """Keep the base conversions found in `cache_folder` and `head`'s weights in the
    `.runtime/` beside `model_path`; returns the runtimes kept (none if there is no
    conversion or the head is not plain Dense layers).

    A hard link where the file system allows (the cache may be deleted later: the link
    keeps the file), else a copy; each file appears whole or not at all.
    """
    from retrain.common.files import RUNTIME_DIR
    from retrain.data.images import file_digest

    layers = head_layers(head)
    sources = {runtime: converted_path(cache_folder, "base", runtime) for runtime in CONVERTED}
    sources = {runtime: path for runtime, path in sources.items() if os.path.isfile(path)}
    if layers is None or not sources:
        return []
    runtime_dir = os.path.join(os.path.dirname(os.path.abspath(model_path)), RUNTIME_DIR)
    stem = file_digest(model_path)[:16]
    arrays = {}
    for i, (kernel, bias, activation) in enumerate(layers):
        arrays.update({f"kernel_{i}": kernel, f"bias_{i}": bias,
                       f"activation_{i}": np.array(activation)})
    with atomic.atomic_path(head_file(runtime_dir, stem), suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    for runtime, source in sources.items():
        with atomic.atomic_path(base_file(runtime_dir, stem, runtime)) as tmp:
            os.remove(tmp)
            try:
                os.link(source, tmp)
            except OSError:  # another file system, or links not allowed
                shutil.copyfile(source, tmp)
    return list(sources)


def read_head(path):
    """[(kernel, bias, activation)] from a head file `keep` wrote; ValueError if damaged."""
    with np.load(path, allow_pickle=False) as data:
        count = len([name for name in data.files if name.startswith("kernel_")])
        layers = [(data[f"kernel_{i}"].astype(np.float32), data[f"bias_{i}"].astype(np.float32),
                   str(data[f"activation_{i}"])) for i in range(count)]
    for (kernel, bias, activation), following in zip(layers, layers[1:] + [None]):
        if kernel.ndim != 2 or bias.shape != kernel.shape[1:] or activation not in ACTIVATIONS \
                or (following is not None and following[0].shape[0] != kernel.shape[1]):
            raise ValueError(f"{path}: not a head kapps wrote")
    if not layers:
        raise ValueError(f"{path}: holds no layer")
    return layers
