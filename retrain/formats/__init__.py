"""Formats: one module per file format a Keras classifier is written to.

`keras_model` (.keras), `graph` (TF1 retrain.py's frozen graph.pb), `saved_model`
(TF Serving's folder), `litert` (.tflite, float32/dynamic/float16), `int8` (full-integer
LiteRT with a measured float fallback), `onnx`. Each takes a model and a path and writes
atomically; none knows how the model was trained or how it will be answered.

May import: retrain.common, retrain.data.
"""
