"""`kapps retrain` / `python -m retrain`: parse flags into a `RetrainConfig` and call `retrain`.

Flag names and meanings of TensorFlow's old retrain.py are kept; defaults are read
from `RetrainConfig`, so each is written once.
"""
import argparse
import dataclasses
import sys

from retrain.config import FINE_TUNE_HELP, RetrainConfig
from retrain.errors import run_cli

HELP = {
    "image_dir": "folder with one sub-folder of pictures per class",
    "architecture": "registry name of the base network (see `kapps models`)",
    "weights": "'imagenet', 'none' (from scratch), a weights file, or a saved .keras "
               "classifier whose layers up to its classifier become the base",
    "model_dir": "folder where pretrained weight files are looked up before downloading",
    "base_layer": "end the frozen base at this named layer of the architecture (`kapps summary "
                  "NAME` lists them) or of the saved classifier; its output is pooled as the "
                  "features. Earlier layers transfer better to unlike classes (default: the "
                  "whole base, up to the classifier)",
    "image_size": "input side in pixels (default: the architecture's)",
    "bottleneck_dir": "cache of base features (default: ~/.cache/kapps/bottlenecks)",
    "output_dir": "export folder (default: saved_models/<name of image_dir>)",
    "output_graph": "also write a frozen TF1-style graph (retrain.py format) to this file",
    "output_labels": "also write the labels file here",
    "epochs": "passes over the training pictures",
    "how_many_training_steps": "training batches in all (retrain.py's flag; overrides --epochs)",
    "learning_rate": "peak learning rate (default 1e-3 for a head, 1e-4 for top:N, "
                     "1e-5 for all with pretrained weights)",
    "optimizer": "adam, sgd (momentum 0.9) or rmsprop",
    "train_batch_size": "pictures per training batch",
    "testing_percentage": "percentage of pictures used for the test split",
    "validation_percentage": "percentage of pictures used for the validation split",
    "flip_left_right": "randomly mirror training pictures",
    "random_crop": "percentage of margin randomly cropped off training pictures",
    "random_scale": "percentage by which training pictures are randomly scaled up",
    "random_brightness": "percentage by which training pixels are randomly multiplied up or down",
    "distorted_variants": "distorted copies of each picture cached for head training",
    "fine_tune": FINE_TUNE_HELP,
    "dropout": "dropout rate before the classifier",
    "hidden_units": "width of an optional hidden dense layer in the head (0: none)",
    "label_smoothing": "label smoothing of the cross-entropy loss",
    "early_stopping": "stop after this many epochs without better validation accuracy (0: off)",
    "warmup_epochs": "epochs of linear learning-rate warmup before the cosine decay",
    "class_weights": "weight classes by inverse frequency (--no-class_weights to switch off)",
    "seed": "random seed, for reproducible runs",
    "print_misclassified_test_images": "list the test pictures the model got wrong",
    "train_on_validation": "train on train+validation (no validation monitoring)",
    "distribute": "train with tf.distribute.MirroredStrategy over the local devices",
    "demo": "train on scikit-learn's bundled handwritten digits, from scratch",
    "verbose": "0 quiet, 1 progress bars, 2 one line per epoch",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kapps retrain", argument_default=argparse.SUPPRESS,
        description="Train a classifier on a folder of labelled pictures and export it.")
    for f in dataclasses.fields(RetrainConfig):
        default = f.default
        help_ = HELP[f.name] + ("" if default is None or isinstance(default, bool)
                                else f" (default: {default})")
        flag = "--" + f.name
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(flag, action=action, help=help_)
        else:
            kind = {int: int, float: float}.get(type(default), str)
            if f.name in ("image_size", "how_many_training_steps"):
                kind = int
            elif f.name == "learning_rate":
                kind = float
            parser.add_argument(flag, type=kind, metavar=f.name.upper(), help=help_)
    return parser


def parse_config(argv):
    return RetrainConfig(**vars(build_parser().parse_args(argv)))


def _main(argv):
    from retrain.train import retrain

    try:
        retrain(parse_config(argv))
    except KeyboardInterrupt:
        print("\nInterrupted before training started; nothing was exported.", file=sys.stderr)
        return 130
    return 0


def main(argv=None):
    return run_cli(_main, sys.argv[1:] if argv is None else argv)
