"""`kapps review`: the pictures of a folder whose labels are probably wrong.

    kapps review --image_dir DIR [--folds 5] [--rank_by self_confidence|normalized_margin]
                 [--architecture NAME --weights W --image_size N --bottleneck_dir DIR ...]
    kapps retrain --image_dir DIR --drop_label_issues

Confident learning (Northcutt et al., JAIR 2021) on out-of-fold probabilities of a head
fitted on the frozen base's cached features: the same base and cache as `kapps retrain`
with the same flags, so the retrain after a review computes no feature again. Writes
label_review.json, label_review.png and label_issues.txt to --output_dir; nothing in the
image folder is moved or changed.
"""
import argparse
import dataclasses
import sys

from kapps.errors import run_cli
from retrain.review import ReviewConfig


def build_parser():
    parser = argparse.ArgumentParser(prog="kapps review", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     argument_default=argparse.SUPPRESS)
    for f in dataclasses.fields(ReviewConfig):
        kind = {"image_size": int, "verbose": int, "folds": int, "seed": int,
                "l2": float}.get(f.name, str)
        shown = "" if f.default is None else f" (default: {f.default})"
        parser.add_argument("--" + f.name, type=kind, metavar=f.name.upper(),
                            help=f.metadata["help"] + shown)
    return parser


def _main(argv):
    config = ReviewConfig(**vars(build_parser().parse_args(argv)))
    # Every mistake answers here, before TensorFlow loads: the flags, then the folder.
    config.check()
    from retrain.dataset import check_image_folder

    check_image_folder(config.image_dir)
    from retrain.cli_retrain import start_decoding_ahead

    start_decoding_ahead(config.retrain_config())
    from kapps.process import import_tensorflow

    import_tensorflow()  # before Keras loads it, so its start-up chatter stays hidden
    from retrain.review import review_labels

    review_labels(config)
    return 0


def main(argv=None):
    return run_cli(_main, sys.argv[1:] if argv is None else argv)
