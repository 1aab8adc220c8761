"""Prediction: answers for new pictures from any model file kapps writes or reads.

`predictor` holds `Predictor` and `predict` (top-k, labels, translations); `locate` finds
a model's files; `backends/` has one module per model format (Keras, graph.pb,
SavedModel, LiteRT, ONNX, and a kept base with a NumPy head); `runtimes` picks and caches
the LiteRT/ONNX conversions that run a base faster than TensorFlow; `kept_base` keeps the
feature pass's conversion beside a model; `translations` reads label translations;
`explain` draws Grad-CAM heatmaps.

May import: retrain.common, retrain.data, retrain.report, retrain.formats.
"""
