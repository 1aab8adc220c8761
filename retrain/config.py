"""`RetrainConfig`: every setting of a retraining run, with its default written once.

The command line reads its flag defaults from here, the tuner varies these fields
per trial (`dataclasses.replace`), and the full config is saved in `metrics.json`.
Flags inherited from TensorFlow's old retrain.py keep their names and meaning.
"""
import dataclasses
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Optional

from retrain.errors import UserError

FINE_TUNE_HELP = ("'none' (train a new head only), 'top:N' (unfreeze the last N layers that "
                  "have weights), 'all'")
OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass
class RetrainConfig:
    """Settings of one retraining run. `None` means "pick the sensible default" (see `resolve`)."""

    image_dir: Optional[str] = None
    architecture: str = "mobilenet_v2"
    weights: str = "imagenet"          # imagenet | none | weights file | .keras classifier
    model_dir: Optional[str] = None    # where pretrained weight files are looked up first
    base_layer: Optional[str] = None   # end the base at this layer (default: before the top)
    image_size: Optional[int] = None   # default: the architecture's default input size
    bottleneck_dir: Optional[str] = None
    output_dir: Optional[str] = None   # default: saved_models/<name of image_dir>
    output_graph: Optional[str] = None  # also write a frozen TF1-style graph.pb here
    output_labels: Optional[str] = None  # also write labels.txt here
    epochs: int = 10
    how_many_training_steps: Optional[int] = None  # retrain.py's flag: total batches
    learning_rate: Optional[float] = None  # default 1e-3 for a head, 1e-4 / 1e-5 fine-tuning
    optimizer: str = "adam"
    train_batch_size: int = 32
    testing_percentage: float = 10.0
    validation_percentage: float = 10.0
    flip_left_right: bool = False
    random_crop: float = 0.0        # percent of margin randomly cropped off
    random_scale: float = 0.0       # percent by which the picture is randomly scaled up
    random_brightness: float = 0.0  # percent by which pixels are randomly multiplied up or down
    distorted_variants: int = 4     # cached distorted copies per picture when distorting
    fine_tune: str = "none"
    dropout: float = 0.2
    hidden_units: int = 0           # optional hidden dense layer in the head (0: none)
    label_smoothing: float = 0.1
    early_stopping: int = 0         # patience in epochs on validation accuracy (0: off)
    warmup_epochs: float = 1.0
    class_weights: bool = True      # balance classes of unequal size
    seed: int = 0
    print_misclassified_test_images: bool = False
    train_on_validation: bool = False  # final model: train on train+validation
    distribute: bool = False        # tf.distribute.MirroredStrategy over local devices
    demo: bool = False
    verbose: int = 1

    @property
    def distorts(self):
        """Whether any training-time distortion is switched on."""
        return bool(self.flip_left_right or self.random_crop or self.random_scale
                    or self.random_brightness)

    def fine_tune_layers(self):
        """`None` for a frozen base, `-1` for all layers, else N of `top:N`."""
        mode = self.fine_tune.strip().lower()
        if mode in ("none", "", "head"):
            return None
        if mode == "all":
            return -1
        match = re.fullmatch(r"top:(\d+)", mode)
        if not match or int(match.group(1)) < 1:
            raise UserError(f"--fine_tune must be {FINE_TUNE_HELP}. Received: {self.fine_tune!r}")
        return int(match.group(1))

    def to_dict(self):
        return dataclasses.asdict(self)


def default_output_dir(image_dir):
    return os.path.join("saved_models", os.path.basename(os.path.normpath(image_dir)))


def default_bottleneck_dir():
    """retrain.py cached under /tmp/bottleneck; keep a per-user cache that survives runs."""
    base = os.environ.get("KAPPS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kapps")
    if not os.access(os.path.dirname(base) or ".", os.W_OK) and not os.path.isdir(base):
        base = os.path.join(tempfile.gettempdir(), "kapps")
    return os.path.join(base, "bottlenecks")


def _check(condition, message):
    if not condition:
        raise UserError(message)


def resolve(config):
    """A copy of `config` with defaults filled in and every value checked (UserError if bad)."""
    from kapps.registry import get_model_info

    c = dataclasses.replace(config)
    _check(c.image_dir, "No image folder given: pass --image_dir FOLDER (one sub-folder per "
                        "class), or --demo to train on the bundled digits.")
    try:
        info = get_model_info(c.architecture)
    except ValueError as err:
        raise UserError(f"--architecture: {err}") from None
    c.architecture = info.name
    if str(c.weights).lower() == "none":
        c.weights = "none"
    elif c.weights != "imagenet" and not os.path.isfile(c.weights):
        raise UserError(f"--weights {c.weights}: no such file. Use 'imagenet', 'none', a weights "
                        "file (.h5), or a saved .keras classifier to transfer from.")
    tune = c.fine_tune_layers()
    _check(c.optimizer in OPTIMIZERS,
           f"--optimizer must be one of {', '.join(OPTIMIZERS)}. Received: {c.optimizer!r}")
    _check(c.weights != "none" or tune == -1,
           "--weights none trains from scratch, which needs --fine_tune all "
           f"(received --fine_tune {c.fine_tune}).")
    _check(c.epochs >= 1, f"--epochs must be at least 1. Received: {c.epochs}")
    _check(c.train_batch_size >= 1,
           f"--train_batch_size must be at least 1. Received: {c.train_batch_size}")
    _check(0 <= c.dropout < 1, f"--dropout must be in [0, 1). Received: {c.dropout}")
    _check(0 <= c.label_smoothing < 1,
           f"--label_smoothing must be in [0, 1). Received: {c.label_smoothing}")
    if c.image_size is None:
        c.image_size = info.default_size
    _check(c.image_size >= info.min_size,
           f"--image_size must be at least {info.min_size} for {info.name}. "
           f"Received: {c.image_size}")
    if c.learning_rate is None:
        c.learning_rate = 1e-3 if tune is None or c.weights == "none" else (
            1e-4 if tune > 0 else 1e-5)
    if c.output_dir is None:
        c.output_dir = default_output_dir(c.image_dir)
    if c.bottleneck_dir is None:
        c.bottleneck_dir = default_bottleneck_dir()
    return c
