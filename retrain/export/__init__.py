"""Export: everything a trained classifier leaves behind, one module per format.

`files` names every file of an export folder (and the legacy graph's tensor names);
`folder` writes a whole export folder; `keras_model` and `graph` write one format each,
as do `saved_model`, `litert` and `onnx` for `kapps export`, whose library function,
`convert.export_model`, also measures the result against model.keras.
"""
