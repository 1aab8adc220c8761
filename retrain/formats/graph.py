"""`graph.pb`: a frozen TF1-style graph that old retrain.py clients use
unchanged: JPEG bytes into `DecodeJpeg/contents:0`, scores out of `final_result:0`.

The graph decodes the bytes as `retrain.data.images.load_image` (Pillow) does, so a client
feeding a file's bytes gets the scores `model.keras` gives for the same picture: JPEG
with libjpeg's accurate IDCT (TensorFlow's default fast one is off by a few levels)
and its EXIF orientation applied, PNG at 16 bits scaled by the format's range and
transparency composited on white, GIF's first frame, BMP and WebP.
"""
import tensorflow as tf

from retrain.common import atomic
from retrain.common.files import GRAPH_INPUT, GRAPH_MIN_SIDE, GRAPH_OUTPUT
from retrain.data.images import JPEG_SCALES

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG"
_EXIF_MARK = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112


def _uint(data, offset, size, little):
    """The unsigned integer of `size` (2 or 4) bytes at `offset` of the string `data`."""
    offset = tf.minimum(tf.cast(offset, tf.int32), tf.strings.length(data))  # past the end: ""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size), tf.uint8), tf.int64)
    raw = tf.pad(raw, [[0, size - tf.shape(raw)[0]]])  # a short (damaged) header reads 0
    order = tf.range(size, dtype=tf.int64)
    shifts = tf.where(little, order, size - 1 - order) * 8
    return tf.reduce_sum(tf.bitwise.left_shift(raw, shifts))


def exif_orientation(contents):
    """The EXIF orientation (1-8) of JPEG bytes, 1 where there is none: what Pillow's
    `ImageOps.exif_transpose` reads from IFD0 of the APP1 "Exif" segment."""
    parts = tf.strings.split(contents, _EXIF_MARK, maxsplit=1)
    has_exif = tf.size(parts) == 2
    tiff = tf.cond(has_exif, lambda: parts[-1], lambda: tf.constant(b""))
    little = tf.strings.substr(tiff, 0, 2) == b"II"
    ifd = _uint(tiff, 4, 4, little)
    count = tf.minimum(_uint(tiff, ifd, 2, little), 64)
    entries = ifd + 2 + 12 * tf.range(count)
    tags = tf.map_fn(lambda at: _uint(tiff, at, 2, little), entries, fn_output_signature=tf.int64)
    hits = tf.where(tf.equal(tags, _ORIENTATION_TAG))[:, 0]
    value = tf.cond(tf.size(hits) > 0,
                    lambda: _uint(tiff, entries[hits[0]] + 8, 2, little),
                    lambda: tf.constant(1, tf.int64))
    return tf.where(has_exif & (value >= 1) & (value <= 8), value, 1)


def _transpose(image):
    return tf.transpose(image, [1, 0, 2])


def apply_orientation(image, orientation):
    """`image` turned upright as Pillow's `exif_transpose` does for `orientation` 1-8."""
    turns = [
        lambda: image,                                           # 1
        lambda: tf.reverse(image, [1]),                          # 2: mirrored
        lambda: tf.image.rot90(image, 2),                        # 3: upside down
        lambda: tf.reverse(image, [0]),                          # 4: flipped
        lambda: _transpose(image),                               # 5: transposed
        lambda: tf.image.rot90(image, 3),                        # 6: turned right
        lambda: tf.image.rot90(_transpose(image), 2),            # 7: transversed
        lambda: tf.image.rot90(image, 1),                        # 8: turned left
    ]
    return tf.switch_case(tf.cast(orientation - 1, tf.int32), turns)


def model_min_side(model):
    """The longer side of `model`'s `resize` layer (what a decode must keep), else None."""
    from retrain.common.layers import resize_layer

    resize = resize_layer(model)
    return None if resize is None else max(int(resize.height), int(resize.width))


def decode_picture(contents, min_side=None):
    """Encoded picture bytes -> float32 (height, width, 3) RGB in [0, 255], as Pillow reads them.

    A JPEG is decoded at `retrain.data.images.jpeg_scale` for `min_side`: the scale is computed
    from the JPEG header with the rule Pillow's `draft` follows (before the EXIF
    orientation is applied, as Pillow does), so the graph sees the pixels that training
    and `model.keras` prediction saw.
    """
    head = tf.strings.substr(contents, 0, 4)
    min_side = tf.constant(min_side or 0, tf.int32, name=GRAPH_MIN_SIDE)

    def jpeg():
        shape = tf.io.extract_jpeg_shape(contents)
        fits = tf.minimum(shape[0], shape[1]) // tf.maximum(min_side, 1)
        fits = tf.where(min_side > 0, fits, 1)
        # index into JPEG_SCALES (8, 4, 2, 1): the first scale that fits
        index = tf.reduce_sum(tf.cast(tf.constant(JPEG_SCALES) > fits, tf.int32))
        index = tf.minimum(index, len(JPEG_SCALES) - 1)
        branches = [lambda s=s: tf.io.decode_jpeg(contents, channels=3, ratio=s,
                                                  dct_method="INTEGER_ACCURATE")
                    for s in JPEG_SCALES]
        pixels = tf.switch_case(index, branches)
        return tf.cast(apply_orientation(pixels, exif_orientation(contents)), tf.float32)

    def png():
        # 16 bits read as such, then scaled by 65535/255 (8-bit files give exact levels).
        pixels = tf.cast(tf.io.decode_png(contents, channels=4, dtype=tf.uint16), tf.float32)
        rgb, alpha = tf.round(pixels[..., :3] / 257.0), tf.round(pixels[..., 3:] / 257.0)
        return tf.round((rgb * alpha + 255.0 * (255.0 - alpha)) / 255.0)

    def other():  # GIF (first frame), BMP, WebP
        return tf.cast(tf.io.decode_image(contents, channels=3, expand_animations=False),
                       tf.float32)

    return tf.case([(tf.strings.substr(head, 0, 3) == _JPEG_MAGIC, jpeg),
                    (head == _PNG_MAGIC, png)], default=other)


def write_frozen_graph(model, path, min_side=None):
    """Freeze `model` (raw pixels in, scores out) behind a picture-decoding input, TF1 style.

    The graph has a scalar string placeholder `DecodeJpeg/contents` (JPEG bytes; PNG,
    GIF, BMP and WebP too) and `final_result` of shape [1, classes], as old retrain.py's
    graphs had. A JPEG is decoded at the reduced scale that keeps `min_side` (defaults
    to the model's `resize` size), as `retrain.data.images.load_image` does.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    min_side = min_side or model_min_side(model)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def serve(contents):
        image = decode_picture(contents, min_side)
        image.set_shape([None, None, 3])
        return model(image[tf.newaxis], training=False)

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    inner = frozen.graph.as_graph_def()
    inner_input = frozen.inputs[0].name
    inner_output = frozen.outputs[0].name
    graph = tf.Graph()
    with graph.as_default():
        contents = tf.compat.v1.placeholder(tf.string, shape=[], name=GRAPH_INPUT)
        scores, = tf.graph_util.import_graph_def(
            inner, input_map={inner_input: contents}, return_elements=[inner_output],
            name="model")
        tf.identity(scores, name=GRAPH_OUTPUT)
    atomic.write_bytes(path, graph.as_graph_def().SerializeToString())
