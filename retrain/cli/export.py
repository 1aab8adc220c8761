"""`kapps export`: a trained model as a SavedModel, a LiteRT (.tflite) or an ONNX file.

    kapps export --model saved_models/pets --format saved_model|litert|onnx
                 [--quantize dynamic|float16|int8] [--output PATH]
                 [--assert_agreement_at_least 0.99]

Each export is checked against model.keras on the run's test pictures; the table
printed (and export_report.json beside the file) says how it compares, and a quantized
export gets one line saying whether it keeps the promise (99% top-1 agreement, at most
0.5 points of accuracy lost). int8 keeps its most harmful layers in float until it
agrees with model.keras on held-out training pictures.
"""
import argparse
import os
import sys

from kapps.errors import UserError, run_cli
from kapps.process import start_devices
from retrain.common.files import LITERT_QUANTIZE, MODEL_FILE


def build_parser():
    parser = argparse.ArgumentParser(prog="kapps export", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help=f"the folder `kapps retrain` exported (or its {MODEL_FILE})")
    parser.add_argument("--format", required=True,
                        help="saved_model (TF Serving), litert (.tflite) or onnx")
    parser.add_argument("--quantize", help=f"litert only: {', '.join(LITERT_QUANTIZE)} "
                                           "(default: float32)")
    parser.add_argument("--output", help="file or folder to write (default: in the model folder)")
    parser.add_argument("--assert_agreement_at_least", type=float, metavar="FRACTION",
                        help="after writing, exit with status 1 and one line if the top-1 "
                             "agreement with model.keras on the test pictures is below this "
                             "fraction, e.g. 0.99 (for scripts and CI)")
    return parser


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"


def format_table(row, keras_size):
    """The export beside model.keras: size, test accuracy, agreement, score difference."""
    head = ("file", "format", "size", "test accuracy", "top-1 agreement", "max |score diff|")
    diff = row["max_score_difference"]
    kind = row["format"] + (f" {row['quantize']}" if row["quantize"] else "")
    rows = [(MODEL_FILE, "keras", f"{keras_size / 2**20:.2f} MiB",
             _percent(row["keras_test_accuracy"]), "", ""),
            (row["file"], kind, f"{row['size_bytes'] / 2**20:.2f} MiB",
             _percent(row["test_accuracy"]), _percent(row["top1_agreement"]),
             "n/a" if diff is None else f"{diff:.2e}")]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
             for r in (head, *rows)]
    footer = f"on {row['test_pictures']} test pictures" if row["test_pictures"] else \
        "no test pictures found (split.json or the image folder is missing): not measured"
    return "\n".join(lines + [footer])


def check_flags(args):
    """`UserError` for the first mistake in the flags or the model folder, before TensorFlow
    loads."""
    from retrain.common.atomic import check_writable
    from retrain.export.convert import check_request, model_source

    check_request(args.format, args.quantize)
    floor = args.assert_agreement_at_least
    if floor is not None and not 0 <= floor <= 1:
        raise UserError("--assert_agreement_at_least is a fraction of the test pictures, in "
                        f"[0, 1]. Received: {floor}")
    model_source(args.model)
    if args.output:
        check_writable(os.path.dirname(os.path.abspath(args.output)), "--output")


def _main(argv):
    from retrain.export.convert import default_output, disk_size, export_model, model_source

    from retrain.export.convert import verdict

    args = build_parser().parse_args(argv)
    check_flags(args)
    floor = args.assert_agreement_at_least
    start_devices()  # TensorFlow started here, quietly, before the converters load it
    row = export_model(args.model, args.format, args.quantize, args.output,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    folder, keras_path = model_source(args.model)
    print(format_table(row, disk_size(keras_path)))
    line = verdict(row)
    if line:
        print(line)
    written = args.output or default_output(folder, args.format, args.quantize)
    print(f"wrote {written}", file=sys.stderr)
    agree = row["top1_agreement"]
    if floor is not None and (agree is None or agree < floor):
        got = "no test pictures to measure it on" if agree is None else \
            f"top-1 agreement with model.keras is {agree:.4f}"
        print(f"error: {got}, below --assert_agreement_at_least {floor:g} (the export was "
              f"still written to {written}).", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    return run_cli(_main, sys.argv[1:] if argv is None else argv)
