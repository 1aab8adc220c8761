"""A real, offline image folder for demos and tests: scikit-learn's handwritten digits.

`sklearn.datasets.load_digits()` ships with scikit-learn (no download): 1,797 scanned
8x8 digits with pixel values 0..16. They are written as 8-bit grayscale PNGs, one
folder per digit, so the whole retraining pipeline can run on real pictures anywhere.
"""
import io
import os

import numpy as np
from PIL import Image

from retrain import atomic


def _png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_digits_folder(dest):
    """Write the digits under `dest` as `dest/<digit>/digit_<index>.png`; return `dest`.

    Each file is written atomically and files already present are kept, so a second
    call does nothing and an interrupted call is completed by the next one. File names
    use the digit's index in `load_digits()`, so they are the same on every machine.
    """
    from sklearn.datasets import load_digits

    dest = os.fspath(dest)
    digits = load_digits()
    # 0..16 scaled to 0..255 with rounding: 16 -> 255, 8 -> 128.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    for index, (pixels, target) in enumerate(zip(images, digits.target)):
        path = os.path.join(dest, str(int(target)), f"digit_{index:05d}.png")
        if not os.path.exists(path):
            atomic.write_bytes(path, _png_bytes(pixels))
    return dest
