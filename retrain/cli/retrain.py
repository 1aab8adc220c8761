"""`kapps retrain` / `python -m retrain`: parse flags into a `RetrainConfig` and call `retrain`.

Flag names and meanings of TensorFlow's old retrain.py are kept; defaults and help
texts are read from `RetrainConfig`'s fields, so each is written once.
"""
import argparse
import dataclasses
import sys

from retrain.config import RetrainConfig
from kapps.errors import run_cli



def build_parser():
    parser = argparse.ArgumentParser(
        prog="kapps retrain", argument_default=argparse.SUPPRESS,
        description="Train a classifier on a folder of labelled pictures and export it.")
    for f in dataclasses.fields(RetrainConfig):
        default = f.default
        help_ = f.metadata["help"] + ("" if default is None or isinstance(default, bool)
                                else f" (default: {default})")
        flag = "--" + f.name
        if f.name == "demo":
            parser.add_argument(flag, nargs="?", const="digits", metavar="NAME", help=help_)
        elif f.name == "distribute":  # the flag alone: the strategy TF_CONFIG asks for
            parser.add_argument(flag, nargs="?", const="auto", metavar="STRATEGY", help=help_)
        elif f.name == "drop_label_issues":  # the flag alone: the file kapps review wrote
            parser.add_argument(flag, nargs="?", const=True, metavar="FILE", help=help_)
        elif isinstance(default, bool):
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(flag, action=action, help=help_)
        else:
            kind = {int: int, float: float}.get(type(default), str)
            if f.name in ("image_size", "how_many_training_steps", "verbose"):
                kind = int
            elif f.name in ("learning_rate", "assert_accuracy_at_least", "l2", "worker_timeout"):
                kind = float
            parser.add_argument(flag, type=kind, metavar=f.name.upper(), help=help_)
    return parser


def parse_config(argv):
    return RetrainConfig(**vars(build_parser().parse_args(argv)))


def start_decoding_ahead(config):
    """With a frozen base, decode the pictures on the other cores while TensorFlow is
    imported (`retrain.data.decode_ahead`), when the side they are decoded for is known now."""
    from retrain.data import decode_ahead
    from retrain.config import start_from

    weights, fine_tune = start_from(config)
    side = decode_ahead.side_for(dataclasses.replace(config, weights=weights,
                                                     fine_tune=fine_tune))
    if side:
        from retrain.config import default_bottleneck_dir

        cached = decode_ahead.cached_digests(config.bottleneck_dir or default_bottleneck_dir(),
                                             side)
        decode_ahead.start(config.image_dir, side, skip=cached)


def _main(argv):
    config = parse_config(argv)
    # Every mistake answers here, before TensorFlow loads: the demo's name, the flags, the folder.
    if config.demo:
        from retrain.demo import demo_name

        demo_name(config.demo)
    config.check()
    if config.image_dir:
        from retrain.data.dataset import check_image_folder

        check_image_folder(config.image_dir)
    start_decoding_ahead(config)
    from kapps.process import import_tensorflow

    import_tensorflow()  # before retrain.job imports Keras, so its start-up chatter stays hidden
    from retrain.job import retrain

    from retrain.job import AccuracyBelowThreshold

    try:
        retrain(config)
    except KeyboardInterrupt:
        print("\nInterrupted before training started; nothing was exported.", file=sys.stderr)
        return 130
    except AccuracyBelowThreshold as err:  # the run worked; the model is not good enough
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    return run_cli(_main, sys.argv[1:] if argv is None else argv)
