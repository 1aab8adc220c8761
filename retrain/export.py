"""Writing everything prediction needs into the output folder, each file atomically.

`model.keras` takes raw RGB pixels; `labels.txt` lists classes in output order;
`graph.pb` (on request) is a frozen TF1-style graph that old retrain.py clients use
unchanged: JPEG bytes into `DecodeJpeg/contents:0`, scores out of `final_result:0`.
"""
import os
import shutil

import tensorflow as tf

from retrain import atomic

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
SPLIT_FILE = "split.json"
GRAPH_INPUT = "DecodeJpeg/contents"
GRAPH_OUTPUT = "final_result"
# What a previous export in the same folder consisted of; moved to previous/ before overwriting.
EXPORT_FILES = (MODEL_FILE, LABELS_FILE, METRICS_FILE, SPLIT_FILE, "history.png",
                "confusion_matrix.png", "dataset_report.json", "graph.pb")


def keep_previous_export(output_dir):
    """Move an earlier export out of the way (into `previous/`), so retraining never
    silently destroys a model the user had."""
    if not os.path.isfile(os.path.join(output_dir, MODEL_FILE)):
        return None
    previous = os.path.join(output_dir, "previous")
    shutil.rmtree(previous, ignore_errors=True)
    os.makedirs(previous)
    for name in EXPORT_FILES:
        src = os.path.join(output_dir, name)
        if os.path.exists(src):
            os.replace(src, os.path.join(previous, name))
    return previous


def save_model(model, path):
    with atomic.atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def write_labels(classes, path):
    atomic.write_text(path, "".join(f"{name}\n" for name in classes))


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
