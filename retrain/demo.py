"""A real, offline image folder for demos and tests: scikit-learn's handwritten digits.

`sklearn.datasets.load_digits()` ships with scikit-learn (no download): 1,797 scanned
8x8 digits with pixel values 0..16. They are written as 8-bit grayscale PNGs, one
folder per digit, so the whole retraining pipeline can run on real pictures anywhere.
`--demo` (or `--demo digits`) trains a small CNN on them from scratch; `--demo transfer`
trains a new head on frozen real ImageNet features (MobileNetV2 at 96 px), to show what
transfer learning gives on a small folder (`apply_demo`).
"""
import dataclasses
import os

import numpy as np

from kapps.errors import UserError
from retrain.common import atomic
from retrain.common.png import png_bytes
from retrain.config import RetrainConfig, default_bottleneck_dir

# --demo: scikit-learn's 8x8 digits, trained from scratch; used where the user set nothing else.
# SmallCNN at 16 px (the pictures are 8x8) beat SVC(gamma=0.001) on several hash splits in
# about a minute on 2 cores; docs/BENCHMARKS.md has the numbers.
DEMO_SETTINGS = dict(architecture="small_cnn", weights="none", fine_tune="all", image_size=16,
                     epochs=20, train_batch_size=64, learning_rate=3e-3, dropout=0.1,
                     label_smoothing=0.05, random_crop=5, random_scale=5)
# --demo transfer: a head on frozen ImageNet MobileNetV2 features (Keras' file, or
# torchvision's when that is the one on disk); 96 px is the smallest size Keras publishes
# and keeps the feature pass to seconds. The head is fitted as any default retrain fits it
# (L-BFGS, retrain/train/linear.py): 98.2% where 15 epochs of Adam at 3e-3 gave 97.1%.
# docs/BENCHMARKS.md compares it with the above.
TRANSFER_SETTINGS = dict(architecture="mobilenet_v2", weights="imagenet", fine_tune="none",
                         image_size=96)
DEMOS = {"digits": (DEMO_SETTINGS, "digits"), "transfer": (TRANSFER_SETTINGS, "digits_transfer")}


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
            atomic.write_bytes(path, png_bytes(pixels))
    return dest


def demo_image_dir():
    """Where `--demo` writes the digits folder: beside the bottleneck cache, reused."""
    return os.path.join(os.path.dirname(default_bottleneck_dir()), "demo", "digits")


def demo_name(demo):
    """The demo `demo` names (`True` for the first one, as `--demo` alone), or a `UserError`."""
    name = "digits" if demo is True else str(demo).lower()
    if name not in DEMOS:
        raise UserError(f"--demo {demo}: no such demo; pass --demo {' or --demo '.join(DEMOS)}.")
    return name


def apply_demo(config):
    """The config with the demo's folder and settings, keeping whatever the user changed."""
    settings, output = DEMOS[demo_name(config.demo)]
    defaults = RetrainConfig()
    changes = {k: v for k, v in settings.items()
               if getattr(config, k) == getattr(defaults, k)}
    if config.image_dir is None:
        changes["image_dir"] = write_digits_folder(demo_image_dir())
    if config.output_dir is None:
        changes["output_dir"] = os.path.join("saved_models", output)
    return dataclasses.replace(config, **changes)
