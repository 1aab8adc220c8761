"""A `model.keras` answered by its kept base conversion and a NumPy head, without TensorFlow.

The base (pixels at the model's side in, feature vectors out) runs on LiteRT or ONNX
Runtime from the file the retrain kept (`retrain.prediction.kept_base`); the head's Dense
layers are a matrix product each, computed here in float32. Scores are within 1e-4 of
the model's own on TensorFlow (the parity tests hold every path to that).
"""
import numpy as np

from retrain.prediction.backends.fixed_size import FixedSizeBackend
from retrain.prediction.kept_base import read_head


def _activate(x, activation):
    if activation == "relu":
        return np.maximum(x, 0)
    if activation == "softmax":
        x = np.exp(x - x.max(axis=-1, keepdims=True))
        return x / x.sum(axis=-1, keepdims=True)
    return x


class BaseHeadBackend(FixedSizeBackend):
    """`base` (a LiteRT or ONNX Runtime backend on the kept base) then the head in `head_path`."""

    def __init__(self, base, head_path):
        super().__init__(base.batch_size, base.threads)
        self.base = base
        self.layers = read_head(head_path)
        self.height, self.width = base.height, base.width
        if int(base.num_classes) != self.layers[0][0].shape[0]:
            raise ValueError(f"{head_path}: the head takes {self.layers[0][0].shape[0]} "
                             f"features, the kept base gives {base.num_classes}")
        self.num_classes = self.layers[-1][0].shape[1]

    def _infer(self, batch):
        x = np.asarray(self.base.infer(batch), np.float32)
        for kernel, bias, activation in self.layers:
            x = _activate(x @ kernel + bias, activation)
        return x
