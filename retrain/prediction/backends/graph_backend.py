"""Frozen `graph.pb` backend (TF1 retrain.py format): encoded picture bytes in.

Pictures are decoded here as for `model.keras` (`retrain.data.images`: EXIF orientation,
CMYK, 16-bit, transparency) and handed to a graph that reads PNG as lossless PNG, so
both formats see the same pixels. Only an old retrain.py graph, which decodes JPEG
alone, gets JPEG bytes: the file's own where it can, else a re-encoding.
"""
import io

import numpy as np

from kapps.errors import UserError
from retrain.data import images
from retrain.prediction.backends import error_text, load_picture
from retrain.common.files import GRAPH_INPUT, GRAPH_MIN_SIDE, GRAPH_OUTPUT
from retrain.common.png import png_bytes


class GraphBackend:
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
            self._input = self.graph.get_tensor_by_name(GRAPH_INPUT + ":0")
            self._output = self.graph.get_tensor_by_name(GRAPH_OUTPUT + ":0")
        except Exception as err:  # protobuf and TF raise many types for a foreign file.
            raise UserError(f"cannot load frozen graph {path}: {error_text(err) or type(err).__name__}; "
                            f"it needs input {GRAPH_INPUT}:0 and output {GRAPH_OUTPUT}:0") from None
        # kapps' graphs decode any picture (`DecodePng` inside); retrain.py's only JPEG.
        self._reads_png = any(op.type in ("DecodePng", "DecodeImage")
                              for op in self.graph.get_operations())
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.num_classes = self._output.shape[-1]
        self.min_side = self._min_side()

    def _min_side(self):
        """The side the graph's JPEG decoder keeps, so a picture Pillow decodes for it
        (rotated, CMYK) is reduced the same way; None for graphs without the constant."""
        names = [op.name for op in self.graph.get_operations()
                 if op.name.rsplit("/", 1)[-1] == GRAPH_MIN_SIDE and op.type == "Const"]
        if not names:
            return None
        return int(self.session.run(names[0] + ":0")) or None

    def _scores(self, data):
        return self.session.run(self._output, {self._input: data})[0]

    def run(self, items):
        return [self._run_one(item) for item in items]

    def _run_one(self, item):
        if self._reads_png:
            try:
                return self._scores(png_bytes(load_picture(item, self.min_side),
                                                     compress_level=1))
            except images.ImageError as err:
                return error_text(err)
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
            return self._scores(_jpeg_bytes(load_picture(item, self.min_side)))
        except images.ImageError as err:
            return error_text(err)

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
    """uint8 RGB pixels as high-quality JPEG bytes, for an old graph that only decodes JPEG
    (lossy: its scores may differ a little from the original picture's)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
