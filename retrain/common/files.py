"""Every file of an export folder, named once.

Training writes these names, prediction and tuning read them, and an earlier export
is recognised (and moved to `previous/`) by them.
"""
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
SPLIT_FILE = "split.json"
DATASET_REPORT_FILE = "dataset_report.json"
HISTORY_PLOT = "history.png"
CONFUSION_PLOT = "confusion_matrix.png"
GRAPH_FILE = "graph.pb"
PREVIOUS_DIR = "previous"
RUNTIME_DIR = ".runtime"  # model.keras converted to run faster (`prediction.runtimes`)

# Formats `kapps export` writes beside model.keras, and what it measured of each.
SAVED_MODEL_DIR = "saved_model"
SAVED_MODEL_PB = "saved_model.pb"  # what makes a folder a SavedModel
SAVED_MODEL_LABELS = "assets/labels.txt"  # inside the SavedModel, where TF Serving keeps assets
ONNX_FILE = "model.onnx"
EXPORT_REPORT_FILE = "export_report.json"
LITERT_QUANTIZE = ("dynamic", "float16", "int8")


def litert_file(quantize=None):
    """`model.tflite` (float32), or `model_<quantize>.tflite`."""
    return f"model_{quantize}.tflite" if quantize else "model.tflite"


# What a previous export in the same folder consisted of; moved to previous/ before overwriting.
EXPORT_FILES = (MODEL_FILE, LABELS_FILE, METRICS_FILE, SPLIT_FILE, HISTORY_PLOT,
                CONFUSION_PLOT, DATASET_REPORT_FILE, GRAPH_FILE, SAVED_MODEL_DIR, ONNX_FILE,
                EXPORT_REPORT_FILE, RUNTIME_DIR, litert_file()) + tuple(
                    litert_file(q) for q in LITERT_QUANTIZE)

# The frozen-graph interface of TF1's retrain.py: JPEG bytes in, softmax scores out.
GRAPH_INPUT = "DecodeJpeg/contents"
GRAPH_OUTPUT = "final_result"
# A constant in graph.pb: the side its JPEG decoder keeps (0: full size), so a backend
# that decodes a picture for the graph with Pillow reduces it the same way.
GRAPH_MIN_SIDE = "decode_min_side"
# The pictures `kapps review` found probably mislabeled, one path a line (`--drop_label_issues`).
LABEL_ISSUES_FILE = "label_issues.txt"
