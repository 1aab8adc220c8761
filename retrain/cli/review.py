"""`kapps review`: the pictures of a folder whose labels are probably wrong.

    kapps review --image_dir DIR [--folds 5] [--rank_by self_confidence|normalized_margin]
                 [--architecture NAME --weights W --image_size N --bottleneck_dir DIR ...]
    kapps retrain --image_dir DIR --drop_label_issues
    kapps review --apply label_decisions.json --image_dir DIR [--output_dir OUT]
    kapps review --undo OUT/label_moves.jsonl --image_dir DIR

Confident learning (Northcutt et al., JAIR 2021) on out-of-fold probabilities of a head
fitted on the frozen base's cached features: the same base and cache as `kapps retrain`
with the same flags, so the retrain after a review computes no feature again. Writes
label_review.json, label_review.png, label_review.html and label_issues.txt to --output_dir;
nothing in the image folder is moved or changed. label_review.html (open it by
double-click) goes through the flagged pictures and downloads the decisions; --apply moves
the pictures they say to move, logging each move in OUT/label_moves.jsonl, which --undo
replays backwards (retrain/review/relabel.py describes the files).
"""
import argparse
import dataclasses
import sys

from kapps.errors import UserError, run_cli
from retrain.review import relabel
from retrain.review.labels import ReviewConfig


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
    parser.add_argument("--apply", metavar="DECISIONS",
                        help=f"move the pictures a {relabel.DECISIONS_FILE} (what "
                             f"{relabel.PAGE_FILE} downloads) says to move, instead of a review")
    parser.add_argument("--undo", metavar="LOG",
                        help=f"move back every picture a {relabel.MOVES_FILE} (what --apply "
                             "wrote) says was moved")
    return parser


def _main(argv):
    args = vars(build_parser().parse_args(argv))
    apply, undo = args.pop("apply", None), args.pop("undo", None)
    config = ReviewConfig(**args)
    if apply is not None or undo is not None:
        # Moving files a person chose to move: no TensorFlow, no review.
        if apply is not None and undo is not None:
            raise UserError("--undo: give --apply DECISIONS or --undo LOG, not both")
        if not config.image_dir:
            raise UserError("No image folder given: pass --image_dir FOLDER, the folder the "
                            "pictures are moved in.")
        from retrain.data.dataset import check_image_folder

        check_image_folder(config.image_dir)
        if apply is not None:
            relabel.apply_decisions(apply, config.image_dir, config.out_dir())
        else:
            relabel.undo_moves(undo, config.image_dir)
        return 0
    # Every mistake answers here, before TensorFlow loads: the flags, then the folder.
    config.check()
    from retrain.data.dataset import check_image_folder

    check_image_folder(config.image_dir)
    from retrain.cli.retrain import start_decoding_ahead

    start_decoding_ahead(config.retrain_config())
    from kapps.process import import_tensorflow

    import_tensorflow()  # before Keras loads it, so its start-up chatter stays hidden
    from retrain.review.labels import review_labels

    review_labels(config)
    return 0


def main(argv=None):
    return run_cli(_main, sys.argv[1:] if argv is None else argv)
