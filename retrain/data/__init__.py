"""Data: from a folder of pictures to decoded, split, batched pixels.

`images` decodes one picture safely (formats, sizes, EXIF, JPEG draft); `dataset` scans an
image folder (one sub-folder a class) and reports broken files; `split` puts each picture
in train/validation/test by a stable hash of its name; `inputs` builds tf.data pipelines;
`augment` distorts pictures for training; `decode_ahead` decodes while TensorFlow starts;
`label_issues` reads the list `kapps review` writes.

May import: retrain.common.
"""
