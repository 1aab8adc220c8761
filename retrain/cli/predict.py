"""`kapps predict`: top-k answers for pictures and folders of pictures.

    kapps predict --model saved_models/flowers [--top_k 3] [--translations zh.csv]
                  [--json] [--show | --save_figure OUT_DIR] [--threads N]
                  [--explain OUT_DIR [--explain_layer NAME]]
                  [--runtime auto|tensorflow|litert|onnx] PATH...

On a .tflite or .onnx model it imports neither TensorFlow nor Keras, nor on a
model.keras whose conversion for a faster runtime is cached (see --runtime).

Exit status: 0 when every picture was answered; 3 when some were answered and others
could not be read (one `error:` line each); 2 for a mistake: a bad flag, a model or
labels file missing or not matching, or no picture that could be read.
"""
import argparse
import json
import os
import sys
import warnings

from retrain.data import decode_ahead, images
from retrain.prediction import explain
from retrain.report import figures
from retrain.common.atomic import check_writable
from retrain.prediction.runtimes import PREDICT_CROSSOVER, RUNTIMES
from kapps.errors import UserError, run_cli
from retrain.prediction.predictor import (
    DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, PictureResult, Predictor, check_model, missing_paths,
    side_for_tensorflow)

SEPARATOR = "-" * 40
# Some pictures answered, others not readable (2: a mistake, nothing answered; 1: a bug).
SOME_UNREADABLE = 3


def build_parser():
    parser = argparse.ArgumentParser(prog="kapps predict", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="pictures, or folders walked recursively for pictures")
    parser.add_argument("--model", required=True,
                        help="an exported model folder (model.keras + labels.txt), a .keras "
                             "file, a legacy graph.pb folder or file, or what `kapps export` "
                             "writes: a SavedModel folder, a .tflite or an .onnx file")
    parser.add_argument("--labels", help="labels file; defaults to labels.txt beside the model")
    parser.add_argument("--top_k", type=int, default=DEFAULT_TOP_K,
                        help=f"answers per picture (default {DEFAULT_TOP_K})")
    parser.add_argument("--translations",
                        help="UTF-8 file of `english,translated` lines shown beside labels")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"pictures per network call (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--threads", type=int,
                        help="threads of the runtime: LiteRT, ONNX Runtime or TensorFlow "
                             "(default: every core)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="what runs a model.keras: tensorflow, or litert / onnx (a float32 "
                             "conversion made once and kept in .runtime/ beside the model; "
                             "scores within 1e-4 of TensorFlow's); auto (default): a kept "
                             "conversion if there is one, a new one for at least "
                             f"{PREDICT_CROSSOVER} pictures, else TensorFlow")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of text (with `answered_by`: "
                             "which runtime and path answered)")
    parser.add_argument("--verbose", action="store_true",
                        help="say on stderr which runtime and path answered")
    figure = parser.add_mutually_exclusive_group()
    figure.add_argument("--show", action="store_true",
                        help="open a window per picture with its top answers")
    figure.add_argument("--save_figure", metavar="OUT_DIR",
                        help="write PNGs of the pictures with their top answers to OUT_DIR "
                             f"(contact sheets above {figures.MAX_SINGLE_FIGURES} pictures)")
    parser.add_argument("--explain", metavar="OUT_DIR",
                        help="write per picture OUT_DIR/NAME_gradcam.png: the picture with a "
                             "Grad-CAM heatmap of where the model looked for its top answer, "
                             "and the answers; with --json each result also holds the heatmap "
                             "as a grid (`explanation`). Needs the model.keras, run on "
                             "TensorFlow")
    parser.add_argument("--explain_layer", metavar="NAME",
                        help="the layer whose feature map --explain shows (default: the last "
                             "4-D one before the global pooling, nested models searched)")
    return parser


def expand_paths(paths):
    """Pictures named, and pictures found in folders named, in the order given.

    A named file is kept whatever its extension or existence, so it gets an error
    line of its own if it cannot be read; a folder with no pictures is an error.
    """
    found = []
    for path in paths:
        if os.path.isdir(path):
            in_folder = images.list_image_files(path)
            if not in_folder:
                raise UserError(f"no pictures in folder {path} (looked for "
                                f"{', '.join(sorted(images.IMAGE_EXTENSIONS))})")
            found += in_folder
        else:
            found.append(path)
    return found


def format_text(results):
    """Per picture: its path, one `label (score = 0.91234)` line per answer, a separator."""
    lines = []
    for result in results:
        if result.error is not None:
            continue
        lines.append(result.path if result.path is not None else "<array>")
        lines += [f"  {p.display} (score = {p.score:.5f})" for p in result.predictions]
        lines.append(SEPARATOR)
    return "\n".join(lines)


def _answer(args, paths):
    """(the predictor's results for `paths`, which path answered, their heatmaps for
    --explain or None); a model.keras run on TensorFlow gets them decoded on the other
    cores while TensorFlow loads (`retrain.data.decode_ahead`). --explain needs the gradients
    of the model.keras, so TensorFlow runs it whatever conversion is kept."""
    runtime = "tensorflow" if args.explain else args.runtime
    side = side_for_tensorflow(args.model, runtime)
    if side and "tensorflow" not in sys.modules:
        decode_ahead.start(paths, side)
    try:
        predictor = Predictor(args.model, labels=args.labels, translations=args.translations,
                              batch_size=args.batch_size, threads=args.threads,
                              runtime=runtime, pictures=len(paths))
        if args.explain:
            explained = predictor.explain(paths, layer=args.explain_layer, top_k=args.top_k)
            heatmaps = {"layer": predictor.gradcam(args.explain_layer).layer,
                        "maps": [heatmap for heatmap, _ in explained]}
            return [result for _, result in explained], predictor.answered_by, heatmaps
        return predictor.predict(paths, top_k=args.top_k), predictor.answered_by, None
    finally:
        decode_ahead.stop()


def _write_explanations(out_dir, results, heatmaps):
    """Write each answered picture's overlay to `out_dir`; return {id(result): its
    `explanation` for the JSON: the label explained, the layer, the heatmap grid (rows,
    top row first, 0 to 1) and the overlay's path}."""
    done = [(r, heatmap) for r, heatmap in zip(results, heatmaps["maps"]) if heatmap is not None]
    explanations = {}
    for (result, heatmap), name in zip(done, explain.overlay_names([r.path for r, _ in done])):
        path = os.path.join(out_dir, name)
        picture = images.load_image(result.path, explain.OVERLAY_SIDE)
        explain.save_overlay(picture, heatmap, result.predictions, path)
        explanations[id(result)] = {"explanation": {
            "label": result.predictions[0].label, "layer": heatmaps["layer"],
            "heatmap": explain.heatmap_grid(heatmap), "overlay": path}}
    if done:
        print(f"wrote {len(done)} explanation(s) to {out_dir}", file=sys.stderr)
    return explanations


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise UserError(f"--top_k must be at least 1. Received --top_k {args.top_k}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1. Received --batch_size {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1. Received --threads {args.threads}")
    if args.show:
        figures.require_display()
    if args.save_figure:
        check_writable(args.save_figure, "--save_figure")
    if args.explain_layer is not None and not args.explain:
        raise UserError(f"--explain_layer {args.explain_layer} needs --explain OUT_DIR, where "
                        "the pictures with their heatmaps go; pass both")
    if args.explain:
        if args.runtime in ("litert", "onnx"):
            raise UserError(f"--explain needs the gradients of the model.keras, which only "
                            f"TensorFlow runs; drop --runtime {args.runtime}")
        check_writable(args.explain, "--explain")
    check_model(args.model, args.labels)  # a wrong --model first: it is the bigger mistake
    if args.explain:
        explain.check_explainable(args.model, args.labels)
    if args.translations:
        from retrain.prediction.translations import read_translations

        read_translations(args.translations)  # a missing or unreadable file, before any work
    paths = expand_paths(args.paths)
    missing = set(missing_paths(paths))  # an error line each; the others are still answered
    found = [p for p in paths if p not in missing]
    # None found: no model to load.
    answers, answered_by, heatmaps = _answer(args, found) if found else ([], None, None)
    answers = iter(answers)
    if args.verbose and answered_by:
        print(f"answered by {answered_by}", file=sys.stderr)
    results = [PictureResult(p, error=f"cannot read image {p}: no such file; check the path") if p in missing else next(answers)
               for p in paths]

    for result in results:
        if result.error is not None:
            print(f"error: {result.error}", file=sys.stderr)
    explanations = {}
    if heatmaps:
        explained = [r for p, r in zip(paths, results) if p not in missing]
        explanations = _write_explanations(args.explain, explained, heatmaps)
    if args.json:
        print(json.dumps({"answered_by": answered_by, "results": [
            dict(r.to_dict(), **explanations.get(id(r), {})) for r in results]},
            ensure_ascii=False, indent=2))
    elif any(r.error is None for r in results):
        print(format_text(results))

    answered = [r for r in results if r.error is None]
    if answered and (args.show or args.save_figure):
        if args.show:
            figures.show_figures(answered)
        else:
            written = figures.save_figures(answered, args.save_figure)
            print(f"wrote {len(written)} figure(s) to {args.save_figure}", file=sys.stderr)
    if not answered:
        return 2  # each picture's error line says why: the command's input was the mistake
    return 0 if len(answered) == len(results) else SOME_UNREADABLE


def _format_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv=None):
    default_format, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return run_cli(_main, sys.argv[1:] if argv is None else argv)
    finally:
        warnings.formatwarning = default_format


if __name__ == "__main__":
    from kapps.process import exit_now

    exit_now(main())
