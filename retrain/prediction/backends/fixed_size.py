"""What the LiteRT and ONNX Runtime backends share, without TensorFlow: pictures decoded
on a thread pool, resized in NumPy to the model's fixed side, and run in batches.

Their files take float32 pixels already at the model's side (see `retrain.formats.litert`);
`retrain.prediction.backends.resize` resizes exactly as the Keras model's `Resizing` layer does.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from retrain.data import images
from retrain.prediction.backends import error_text, load_picture
from retrain.prediction.backends.resize import resize_bilinear


class FixedSizeBackend:
    """A runtime whose model takes `[batch, height, width, 3]` float32 pixels.

    Subclasses set `height`, `width` and `num_classes` and implement `_infer(batch)`.
    `threads` (default: every core) is shared by decoding and the runtime.
    """

    def __init__(self, batch_size, threads=None):
        self.batch_size = batch_size
        self.threads = threads or os.cpu_count() or 1

    @property
    def input_size(self):
        """(height, width) `infer` takes pictures at, resized by `backends.resize`."""
        return self.height, self.width

    @property
    def min_side(self):
        """The side a JPEG is decoded to keep (`retrain.data.images.jpeg_scale`), as training did."""
        return max(self.height, self.width)

    def _load(self, item):
        try:
            return resize_bilinear(load_picture(item, self.min_side), self.height, self.width)
        except images.ImageError as err:
            return error_text(err)

    def run(self, items):
        """A list with, per item, its scores (num_classes,) or an error string."""
        if len(items) <= 1:
            return self._answer([self._load(item) for item in items])
        batches = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        results = []
        with ThreadPoolExecutor(self.threads) as pool:
            # The next batch decodes while this one runs; no more than two are in memory.
            pending = [pool.submit(self._load, item) for item in batches[0]]
            for following in batches[1:] + [[]]:
                loaded = [future.result() for future in pending]
                pending = [pool.submit(self._load, item) for item in following]
                results += self._answer(loaded)
        return results

    def infer(self, batch):
        """The model's outputs for float32 pixels already at (height, width), [batch, h, w, 3]."""
        return self._infer(np.asarray(batch, np.float32))

    def _answer(self, loaded):
        pictures = [p for p in loaded if not isinstance(p, str)]
        scores = iter(self._infer(np.stack(pictures)) if pictures else [])
        return [p if isinstance(p, str) else next(scores) for p in loaded]
