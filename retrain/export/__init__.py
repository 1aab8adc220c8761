"""Export: everything a trained classifier leaves behind.

`folder` writes a whole model folder (model.keras, labels, metrics, report, figures, and
earlier models moved to `previous/`); `convert` is `kapps export`'s library function: a
model folder to a SavedModel, LiteRT or ONNX file, measured against model.keras;
`imagenet_classifier` writes the 1,000-class ImageNet classifier as a model folder.

May import: retrain.common, retrain.data, retrain.report, retrain.formats, retrain.prediction.
"""
