"""`graph.pb`: a frozen TF1-style graph that old retrain.py clients use
unchanged: JPEG bytes into `DecodeJpeg/contents:0`, scores out of `final_result:0`.
"""
import tensorflow as tf

from retrain import atomic
from retrain.export.files import GRAPH_INPUT, GRAPH_MIN_SIDE, GRAPH_OUTPUT
from retrain.images import JPEG_SCALES


def model_min_side(model):
    """The longer side of `model`'s `resize` layer (what a decode must keep), else None."""
    try:
        resize = model.get_layer("resize")
    except ValueError:
        return None
    return max(int(resize.height), int(resize.width))


def decode_picture(contents, min_side):
    """Encoded picture bytes -> uint8 (height, width, 3), JPEG at `retrain.images.jpeg_scale`.

    The scale is computed from the JPEG header with the rule Pillow's `draft` follows,
    and decoded with libjpeg's accurate integer IDCT (Pillow's default; TensorFlow's
    own default, the fast IDCT, differs by up to 8 levels), so the graph sees the
    pixels that training and `model.keras` prediction saw. Other formats decode fully.
    """
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
        return tf.switch_case(index, branches)

    def other():
        return tf.io.decode_image(contents, channels=3, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def write_frozen_graph(model, path, min_side=None):
    """Freeze `model` (raw pixels in, scores out) behind a JPEG-decoding input, TF1 style.

    The graph has a scalar string placeholder `DecodeJpeg/contents` (JPEG bytes, PNG
    too) and `final_result` of shape [1, classes], as old retrain.py's graphs had.
    A JPEG is decoded at the reduced scale that keeps `min_side` (defaults to the
    model's `resize` size), as `retrain.images.load_image` does.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    min_side = min_side or model_min_side(model)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def serve(contents):
        image = decode_picture(contents, min_side)
        return model(tf.cast(image, tf.float32)[tf.newaxis], training=False)

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
