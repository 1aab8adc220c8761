"""`graph.pb`: a frozen TF1-style graph that old retrain.py clients use
unchanged: JPEG bytes into `DecodeJpeg/contents:0`, scores out of `final_result:0`.
"""
import tensorflow as tf

from retrain import atomic
from retrain.export.files import GRAPH_INPUT, GRAPH_OUTPUT


def write_frozen_graph(model, path):
    """Freeze `model` (raw pixels in, scores out) behind a JPEG-decoding input, TF1 style.

    The graph has a scalar string placeholder `DecodeJpeg/contents` (JPEG bytes, PNG
    too) and `final_result` of shape [1, classes], as old retrain.py's graphs had.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def serve(contents):
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
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
