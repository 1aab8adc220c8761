"""Common: the small helpers every room uses, knowing nothing of training or models.

`atomic` writes files whole or not at all (temp file, then rename); `files` names every
file a model folder holds (and the legacy graph's tensor names); `timing` times the steps
of a run; `fonts` finds a font for any label (CJK included); `layers` walks a Keras
model's layers (its leaves, the `resize` layer); `png` encodes pixels in memory. Nothing
here imports TensorFlow.

May import: nothing of retrain.
"""
