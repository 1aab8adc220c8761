"""`RetrainConfig`: every setting of a retraining run, with its default written once.

The command line reads its flag defaults from here, the tuner varies these fields
per trial (`dataclasses.replace`), and the full config is saved in `metrics.json`.
Flags inherited from TensorFlow's old retrain.py keep their names and meaning.
"""
import dataclasses
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Optional

from kapps.errors import UserError
from retrain.common.atomic import check_writable

FINE_TUNE_HELP = ("'none' (train a new head only), 'top:N' (unfreeze the last N layers that "
                  "have weights), 'all'")
# The optimizers a run (and a search space) may name; `train.fit.make_optimizer` builds them.
OPTIMIZERS = ("adam", "sgd", "rmsprop")


def _flag(default, help):
    """A field whose flag help lives beside it: both command lines read it from here."""
    return dataclasses.field(default=default, metadata={"help": help})


def flag_help(name):
    """The help text of the `RetrainConfig` field `name` (its command-line flag)."""
    return next(f.metadata["help"] for f in dataclasses.fields(RetrainConfig) if f.name == name)


@dataclass
class RetrainConfig:
    """Settings of one retraining run. `None` means "pick the sensible default" (see `resolve`)."""

    image_dir: Optional[str] = _flag(None, "folder with one sub-folder of pictures per class")
    architecture: str = _flag(
        "mobilenet_v2",
        "registry name of the base network (see `kapps models`)")
    weights: Optional[str] = _flag(
        None,
        "'imagenet', 'torchvision' (torchvision's ImageNet MobileNetV2), 'none' (from "
        "scratch, every layer trained), a weights file (.h5, or .pth for torchvision's "
        "MobileNetV2), or a saved .keras classifier whose layers up to its classifier become "
        "the base (default: imagenet where the architecture has ImageNet weights, else none)")
    model_dir: Optional[str] = _flag(
        None,
        "folder where pretrained weight files are looked up before downloading")
    base_layer: Optional[str] = _flag(
        None,
        "end the frozen base at this named layer of the architecture (`kapps summary "
        "NAME` lists them) or of the saved classifier; its output is pooled as the "
        "features. Earlier layers transfer better to unlike classes (default: the whole "
        "base, up to the classifier)")
    image_size: Optional[int] = _flag(None, "input side in pixels (default: the architecture's)")
    bottleneck_dir: Optional[str] = _flag(
        None,
        "cache of base features (default: ~/.cache/kapps/bottlenecks)")
    output_dir: Optional[str] = _flag(
        None,
        "export folder (default: saved_models/<name of image_dir>)")
    output_graph: Optional[str] = _flag(
        None,
        "also write a frozen TF1-style graph (retrain.py format) to this file")
    output_labels: Optional[str] = _flag(None, "also write the labels file here")
    summaries_dir: Optional[str] = _flag(
        None,
        "write TensorBoard logs of training here (retrain.py's flag; open them with "
        "`tensorboard --logdir DIR`; across machines the chief writes them)")
    saved_model_dir: Optional[str] = _flag(
        None,
        "also export a SavedModel for TF Serving to this folder (`kapps export --format "
        "saved_model`)")
    tflite_output_file: Optional[str] = _flag(
        None,
        "also export a float32 LiteRT model to this .tflite file (`kapps export --format "
        "litert` quantizes)")
    onnx_output_file: Optional[str] = _flag(
        None,
        "also export an ONNX model to this .onnx file")
    head_fit: str = _flag(
        "auto",
        "how a head on a frozen base's cached features is fitted: 'lbfgs' (a linear head "
        "solved to the optimum of its L2-regularised loss, the strength chosen on "
        "validation; see retrain/train/linear.py), 'keras' (Keras' fit with --optimizer, "
        "--learning_rate, --epochs), 'auto' (lbfgs unless there is a hidden layer, a "
        "distortion, fine-tuning, or a setting only Keras' fit uses is given: "
        "--learning_rate, --epochs, --optimizer, --how_many_training_steps, "
        "--early_stopping)")
    l2: Optional[float] = _flag(
        None,
        "L2 strength of the lbfgs head fit, 1/C of scikit-learn's LogisticRegression on "
        "standardised features (default: chosen on validation among 0.1, 1, 10, 100, 1000); "
        "refused where Keras' fit runs, which has no use for it")
    epochs: int = _flag(10, "passes over the training pictures")
    how_many_training_steps: Optional[int] = _flag(
        None,
        "training batches in all (retrain.py's flag; overrides --epochs)")
    learning_rate: Optional[float] = _flag(
        None,
        "peak learning rate (default 1e-3 for a head, 1e-4 for top:N, 1e-5 for all with "
        "pretrained weights)")
    optimizer: str = _flag("adam", "adam, sgd (momentum 0.9) or rmsprop")
    train_batch_size: int = _flag(32, "pictures per training batch")
    testing_percentage: float = _flag(10.0, "percentage of pictures used for the test split")
    validation_percentage: float = _flag(
        10.0,
        "percentage of pictures used for the validation split")
    flip_left_right: bool = _flag(False, "randomly mirror training pictures")
    random_crop: float = _flag(0.0, "percentage of margin randomly cropped off training pictures")
    random_scale: float = _flag(
        0.0,
        "percentage by which training pictures are randomly scaled up")
    random_brightness: float = _flag(
        0.0,
        "percentage by which training pixels are randomly multiplied up or down")
    distorted_variants: int = _flag(4, "distorted copies of each picture cached for head training")
    fine_tune: str = _flag("none", FINE_TUNE_HELP)
    dropout: float = _flag(0.2, "dropout rate before the classifier")
    hidden_units: int = _flag(0, "width of an optional hidden dense layer in the head (0: none)")
    label_smoothing: float = _flag(0.1, "label smoothing of the cross-entropy loss")
    early_stopping: int = _flag(
        0,
        "stop after this many epochs without better validation accuracy (0: off)")
    warmup_epochs: float = _flag(
        1.0,
        "epochs of linear learning-rate warmup before the cosine decay")
    class_weights: bool = _flag(
        True,
        "weight classes by inverse frequency (--no-class_weights to switch off)")
    seed: int = _flag(0, "random seed, for reproducible runs")
    deterministic: bool = _flag(
        True,
        "same --seed, same machine: the same numbers and weights (TensorFlow's deterministic "
        "kernels and ordered input pipelines; --no-deterministic trades that for a little "
        "speed, see docs/BENCHMARKS.md)")
    runtime: str = _flag(
        "auto",
        "what runs the frozen base over the pictures whose features are not cached yet: "
        "tensorflow; litert or onnx (a float32 conversion of the base, made once and kept "
        "with the bottlenecks; features within 1e-4 of TensorFlow's); auto (a kept "
        "conversion if there is one, else a new one for enough pictures, else TensorFlow). "
        "TensorFlow trains in every case")
    print_misclassified_test_images: bool = _flag(
        False,
        "list the test pictures the model got wrong")
    assert_accuracy_at_least: Optional[float] = _flag(
        None,
        "after exporting, fail (exit status 1) if the test accuracy is below this "
        "fraction, e.g. 0.9 (make_image_classifier's flag, for scripts and CI)")
    train_on_validation: bool = _flag(
        False,
        "train on train+validation (no validation monitoring)")
    drop_label_issues: Optional[str] = _flag(
        None,
        "leave out the training pictures listed in this file, one a line relative to "
        "--image_dir: the label_issues.txt `kapps review` writes; the flag alone reads the "
        "one in --output_dir. Every other picture keeps its split (listed validation and "
        "test pictures stay, scored on their labels as given)")
    distribute: Optional[str] = _flag(
        None,
        "the tf.distribute strategy: 'mirrored' (MirroredStrategy over this machine's "
        "devices), 'multi_worker' (MultiWorkerMirroredStrategy over the machines TF_CONFIG "
        "names; see docs/guide/more-than-one-machine.md) or 'none'; the flag alone: "
        "multi_worker when TF_CONFIG is set, else mirrored (default: multi_worker when "
        "TF_CONFIG is set, else none)")
    worker_timeout: float = _flag(
        600.0,
        "multi-worker runs: seconds a worker waits for the others to join the cluster, and "
        "the feature pass for a worker that adds nothing to the shared bottleneck cache, "
        "before the run stops, naming the worker")
    backup_dir: Optional[str] = _flag(
        None,
        "back up Keras' training here after every epoch (keras.callbacks.BackupAndRestore; "
        "with multi_worker a folder every worker sees, written by the chief): a run "
        "started again after a crash resumes from the last finished epoch")
    demo: Optional[str] = _flag(
        None,
        "train on scikit-learn's bundled handwritten digits: 'digits' (--demo alone) a small "
        "CNN from scratch, 'transfer' a new head on frozen real ImageNet MobileNetV2 features")
    verbose: Optional[int] = _flag(
        None,
        "0 quiet, 1 progress bars, 2 one line per epoch (default: bars on a terminal, "
        "one line per epoch when the output goes to a file or a pipe)")

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

    def check(self):
        """`UserError` for the first value no run accepts, naming its flag, the rule and the
        value. Reads nothing but the flags (and whether a --weights file exists), and imports
        no TensorFlow, so a mistake answers before any work; `resolve` calls it first."""
        from kapps.registry import check_model_name
        from kapps.stats import has_imagenet_weights, min_size
        from retrain.prediction.runtimes import check_runtime

        _check(self.image_dir or self.demo,
               "No image folder given: pass --image_dir FOLDER (one sub-folder per class), "
               "or --demo to train on the bundled digits.")
        try:
            check_model_name(self.architecture)
        except ValueError as err:
            raise UserError(f"--architecture: {err}") from None
        architecture = str(self.architecture).lower()
        weights = self.weights if self.weights is None else str(self.weights)
        if weights is not None and weights.lower() not in ("imagenet", "torchvision", "none") \
                and not os.path.isfile(weights):
            raise UserError(f"--weights {weights}: no such file. Use 'imagenet', 'torchvision', "
                            "'none', a weights file (.h5, .pth), or a saved .keras classifier "
                            "to transfer from.")
        start = str(start_from(self)[0]).lower()
        if start == "imagenet" and not has_imagenet_weights(architecture):
            raise UserError(f"--weights imagenet: {architecture} has no ImageNet weights; leave "
                            "--weights out (or pass --weights none) to train it from scratch.")
        if (start == "torchvision" or start.endswith(".pth")) and \
                architecture not in ("mobilenet_v2", "mobilenet_v2_torchvision"):
            raise UserError(f"--weights {weights} holds torchvision's MobileNetV2: pass "
                            "--architecture mobilenet_v2 (or mobilenet_v2_torchvision).")
        _check(start != "none" or self.fine_tune_layers() in (None, -1),
               "--weights none trains every layer from scratch: leave --fine_tune out (or "
               f"pass --fine_tune all). Received: --fine_tune {self.fine_tune}")
        _check(self.optimizer in OPTIMIZERS,
               f"--optimizer must be one of {', '.join(OPTIMIZERS)}. Received: {self.optimizer!r}")
        check_runtime(self.runtime)
        _at_least(self.epochs, 1, "--epochs")
        if self.how_many_training_steps is not None:
            _at_least(self.how_many_training_steps, 1, "--how_many_training_steps")
        _check(self.learning_rate is None or self.learning_rate > 0 and
               self.learning_rate != float("inf"),
               f"--learning_rate must be more than 0. Received: {self.learning_rate}")
        _at_least(self.train_batch_size, 1, "--train_batch_size")
        for flag in ("testing_percentage", "validation_percentage"):
            value = getattr(self, flag)
            _check(0 <= value < 100, f"--{flag} must be in [0, 100). Received: {value}")
        _check(self.testing_percentage + self.validation_percentage < 100,
               "--testing_percentage and --validation_percentage must leave pictures to train "
               f"on (sum under 100). Received: {self.testing_percentage:g} + "
               f"{self.validation_percentage:g}")
        for flag in ("random_crop", "random_scale", "random_brightness"):
            value = getattr(self, flag)
            _check(0 <= value <= 100, f"--{flag} is a percentage, in [0, 100]. "
                                      f"Received: {value}")
        _at_least(self.distorted_variants, 1, "--distorted_variants")
        _check(0 <= self.dropout < 1, f"--dropout must be in [0, 1). Received: {self.dropout}")
        _at_least(self.hidden_units, 0, "--hidden_units")
        _check(0 <= self.label_smoothing < 1,
               f"--label_smoothing must be in [0, 1). Received: {self.label_smoothing}")
        _at_least(self.early_stopping, 0, "--early_stopping")
        _check(0 <= self.warmup_epochs < float("inf"),
               f"--warmup_epochs must be at least 0. Received: {self.warmup_epochs}")
        _check(0 <= self.seed < 2**32,
               f"--seed must be in [0, 2**32). Received: {self.seed}")
        _check(self.assert_accuracy_at_least is None or 0 <= self.assert_accuracy_at_least <= 1,
               "--assert_accuracy_at_least is a fraction of the test pictures, in [0, 1]. "
               f"Received: {self.assert_accuracy_at_least}")
        from retrain.train.cluster import cluster_for

        cluster_for(self)  # --distribute, and TF_CONFIG where it is used
        _check(self.worker_timeout > 0,
               f"--worker_timeout must be more than 0 seconds. Received: {self.worker_timeout}")
        if self.backup_dir:
            check_writable(self.backup_dir, "--backup_dir")
        _check(self.verbose in (None, 0, 1, 2),
               f"--verbose must be 0, 1 or 2. Received: {self.verbose}")
        from retrain.train.linear import chosen_head_fit

        chosen_head_fit(self)  # --head_fit, --l2, and lbfgs only where it applies
        least = min_size(architecture)
        _check(self.image_size is None or self.image_size >= least,
               f"--image_size must be at least {least} for {architecture}. "
               f"Received: {self.image_size}")
        if self.output_dir or self.image_dir:
            check_writable(self.output_dir or default_output_dir(self.image_dir), "--output_dir")
        check_writable(self.bottleneck_dir or default_bottleneck_dir(), "--bottleneck_dir")
        if self.drop_label_issues is not None and (self.output_dir or self.image_dir):
            label_issues_file(self)

    def to_dict(self):
        return dataclasses.asdict(self)


def default_output_dir(image_dir):
    return os.path.join("saved_models", os.path.basename(os.path.normpath(image_dir)))


def label_issues_file(config):
    """The file `--drop_label_issues` names: the one given, or with the flag alone (`True`)
    the label_issues.txt `kapps review` wrote in --output_dir; `UserError` when it is not
    a file."""
    from retrain.common.files import LABEL_ISSUES_FILE

    given = config.drop_label_issues
    if given is True:
        folder = config.output_dir or default_output_dir(config.image_dir)
        path = os.path.join(folder, LABEL_ISSUES_FILE)
        _check(os.path.isfile(path),
               f"--drop_label_issues: no {LABEL_ISSUES_FILE} in {folder}; run `kapps review "
               f"--image_dir {config.image_dir or 'DIR'}` first (it writes one there), or pass "
               "--drop_label_issues FILE")
        return path
    _check(os.path.isfile(str(given)),
           f"--drop_label_issues {given}: no such file; pass the {LABEL_ISSUES_FILE} that "
           "`kapps review` wrote (or the flag alone for the one in --output_dir)")
    return str(given)


def default_bottleneck_dir():
    """retrain.py cached under /tmp/bottleneck; keep a per-user cache that survives runs:
    `$KAPPS_CACHE` or ~/.cache/kapps, made when missing (a fresh home has no ~/.cache
    yet), or the temporary folder's where it could not be written."""
    base = os.environ.get("KAPPS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kapps")
    try:
        check_writable(base, "the cache")
    except UserError:
        base = os.path.join(tempfile.gettempdir(), "kapps")
    return os.path.join(base, "bottlenecks")


def imagenet_choice(c):
    """(architecture, weights) that serve --weights imagenet / torchvision / a .pth file.

    MobileNetV2's ImageNet weights come from Keras' file when it is on disk, else from
    torchvision's file when it is (`kapps.torchvision_weights`: an installed package, the
    torch cache, --model_dir), on torchvision's variant of the network (`weights_note`
    says so); else Keras' file is downloaded. `torchvision` and `.pth` files name that variant.
    """
    from kapps import torchvision_weights
    from kapps.mobilenet import imagenet_size
    from kapps.mobilenet_v2 import IMAGENET_SIZES, imagenet_file
    from kapps.registry import get_model_info
    from kapps.weights import keras_cache_dir

    variant = "mobilenet_v2_torchvision"
    if c.architecture not in ("mobilenet_v2", variant):
        _check(c.weights == "imagenet",
               f"--weights {c.weights} holds torchvision's MobileNetV2: pass --architecture "
               f"mobilenet_v2 (or {variant}).")
        return c.architecture, c.weights
    if c.weights != "imagenet" or c.architecture == variant:
        return variant, "imagenet" if c.weights == "torchvision" else c.weights
    size = c.image_size or get_model_info(c.architecture).default_size
    keras_name, _ = imagenet_file(1.0, imagenet_size((size, size, 3), IMAGENET_SIZES), False)
    if any(folder and os.path.isfile(os.path.join(folder, keras_name))
           for folder in (c.model_dir, keras_cache_dir())):
        return c.architecture, c.weights
    if torchvision_weights.local_file(c.model_dir) is None:
        return c.architecture, c.weights  # Keras' file is downloaded, or the error says how
    return variant, c.weights


def weights_note(requested, resolved):
    """The line saying that an architecture without ImageNet weights trains from scratch
    (no --weights named), or that torchvision's weights serve a `--weights imagenet`
    MobileNetV2 (`imagenet_choice`); None when the weights are what was asked for."""
    from kapps import torchvision_weights

    if requested.weights is None and resolved.weights == "none":
        return (f"Weights: {resolved.architecture} has no ImageNet weights, so it trains from "
                "scratch (as --weights none --fine_tune all, learning rate "
                f"{resolved.learning_rate:g}).")
    if not (requested.architecture == "mobilenet_v2" and requested.weights in (None, "imagenet")
            and resolved.architecture == "mobilenet_v2_torchvision"):
        return None
    path = torchvision_weights.local_file(resolved.model_dir)
    return (f"Weights: torchvision's ImageNet MobileNetV2 from "
            f"{torchvision_weights.where_found(path)} (Keras' file is not on disk), on "
            f"--architecture {resolved.architecture}.")


def _check(condition, message):
    if not condition:
        raise UserError(message)


def _at_least(value, least, flag):
    _check(value >= least, f"{flag} must be at least {least}. Received: {value}")


def start_from(config):
    """(weights, fine_tune) a run starts from: the ones named, else ImageNet weights where the
    architecture has them and from scratch (every layer trained) where it has none; a base
    from scratch is never frozen, so `--weights none` alone trains every layer too."""
    from kapps.stats import has_imagenet_weights

    weights = config.weights
    if weights is None:
        weights = "imagenet" if has_imagenet_weights(config.architecture) else "none"
    fine_tune = config.fine_tune
    if str(weights).lower() == "none" and config.fine_tune_layers() is None:
        fine_tune = "all"
    return weights, fine_tune


def resolve(config):
    """A copy of `config` with defaults filled in and every value checked (UserError if bad)."""
    from kapps.registry import get_model_info

    config.check()
    c = dataclasses.replace(config)
    _check(c.image_dir, "No image folder given: pass --image_dir FOLDER (one sub-folder per "
                        "class), or --demo to train on the bundled digits.")
    c.weights, c.fine_tune = start_from(c)
    info = get_model_info(c.architecture)
    c.architecture = info.name
    if str(c.weights).lower() in ("none", "torchvision", "imagenet"):
        c.weights = str(c.weights).lower()
    if c.weights in ("imagenet", "torchvision") or str(c.weights).lower().endswith(".pth"):
        c.architecture, c.weights = imagenet_choice(c)
        info = get_model_info(c.architecture)
    tune = c.fine_tune_layers()
    from retrain.prediction.runtimes import require

    if c.runtime not in ("auto", "tensorflow"):  # fail before the scan, not at extraction
        require(c.runtime, convert=True)
    if c.verbose is None:
        # Progress bars redraw with \r and \b: in a log file (nohup, CI, tee) they are noise.
        c.verbose = 1 if sys.stdout.isatty() else 2
    if c.image_size is None:
        c.image_size = info.default_size
    _check(c.image_size >= info.min_size,
           f"--image_size must be at least {info.min_size} for {info.name}. "
           f"Received: {c.image_size}")
    from retrain.train.linear import chosen_head_fit

    c.head_fit = chosen_head_fit(c)  # before the learning rate's default is filled in
    if c.learning_rate is None:
        c.learning_rate = 1e-3 if tune is None or c.weights == "none" else (
            1e-4 if tune > 0 else 1e-5)
    exports = {"saved_model": c.saved_model_dir, "litert": c.tflite_output_file,
               "onnx": c.onnx_output_file}
    if any(exports.values()):  # fail before training, not after, when a converter is missing
        from retrain.export.convert import require_packages

        for format in (format for format, path in exports.items() if path):
            require_packages(format)
    if c.output_dir is None:
        c.output_dir = default_output_dir(c.image_dir)
    if c.drop_label_issues is not None:
        c.drop_label_issues = label_issues_file(c)
    if c.bottleneck_dir is None:
        c.bottleneck_dir = default_bottleneck_dir()
    check_writable(c.output_dir, "--output_dir")
    check_writable(c.bottleneck_dir, "--bottleneck_dir")
    return c
