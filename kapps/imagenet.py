"""ImageNet's 1,000 class names, carried with kapps, and Keras' `decode_predictions`.

The names are torchvision's (`torchvision/models/_meta.py`, BSD licence, kept beside
them in `kapps/data/`): unique, readable ("tabby", "tiger cat", "espresso"), in the
output order of every ImageNet classifier here, Keras' files and torchvision's alike.
"""
import functools
import os

import numpy as np

CLASSES_FILE = os.path.join(os.path.dirname(__file__), "data", "imagenet_classes.txt")
# The ImageNet classifier `kapps imagenet` writes by default: the one whose real weights
# install offline (`kapps.torchvision_weights`). Here, where reading it needs no Keras.
DEFAULT_ARCHITECTURE = "mobilenet_v2_torchvision"


@functools.lru_cache(maxsize=1)
def class_names():
    """The 1,000 ImageNet class names, index i being output i of an ImageNet classifier."""
    with open(CLASSES_FILE, encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f if line.strip())


def decode_predictions(scores, top=5):
    """[[(index, name, score), ...] best first] for each row of `scores` (N x 1000)."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != 1000:
        raise ValueError("`decode_predictions` expects a batch of 1000 ImageNet scores, shape "
                         f"(N, 1000). Received: shape={scores.shape}")
    names = class_names()
    return [[(int(i), names[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:top]]
            for row in scores]
