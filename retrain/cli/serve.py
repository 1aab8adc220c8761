"""`kapps serve`: exported models behind TF Serving's REST API, with a web page.

    kapps serve --model saved_models/pets [--model other=saved_models/x ...]
                [--host 127.0.0.1] [--port 8501] [--translations zh.csv]
                [--max_batch_size 32] [--batch_timeout_micros 2000] [--max_upload_mb 20]

Exit status: 0 after SIGINT/SIGTERM (requests in flight are finished first),
2 for a user error (a model missing, a port taken, a bad flag).
"""
import argparse
import importlib.util
import os
import re
import sys

from kapps.errors import UserError, run_cli
from retrain.prediction.runtimes import RUNTIMES
from retrain.serving import DEFAULT_HOST, DEFAULT_PORT

NAME = re.compile(r"^[A-Za-z0-9._-]+$")
NEEDS = ("fastapi", "uvicorn", "python_multipart")


def build_parser():
    parser = argparse.ArgumentParser(prog="kapps serve", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]FOLDER",
                        help="an exported model folder, served as /v1/models/NAME (NAME "
                             "defaults to the folder's name); repeat for several models")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}, TF Serving's REST port)")
    parser.add_argument("--translations",
                        help="UTF-8 file of `english,translated` lines shown beside labels")
    parser.add_argument("--max_batch_size", type=int, default=32,
                        help="most pictures per model call (default 32)")
    parser.add_argument("--batch_timeout_micros", type=int, default=2000,
                        help="how long a picture waits for others to share its model call "
                             "(default 2000)")
    parser.add_argument("--max_upload_mb", type=float, default=20,
                        help="largest request body in MiB (default 20)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="what runs a model.keras: auto (a kept LiteRT/ONNX conversion if "
                             "there is one, else TensorFlow), tensorflow, or litert/onnx "
                             "(converted once at start, kept beside the model)")
    parser.add_argument("--threads", type=int,
                        help="threads of the runtime (default: every core)")
    return parser


def parse_models(values):
    """{name: folder} from `--model` values `FOLDER` or `NAME=FOLDER`, in the order given."""
    models = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or os.sep in name:
            folder = value
            name = os.path.splitext(os.path.basename(os.path.normpath(value)))[0]
        if not NAME.match(name):
            raise UserError(f"model name {name!r} (from --model {value}) may hold only letters, "
                            "digits, '.', '_' and '-'; pass --model NAME=FOLDER")
        if name in models:
            raise UserError(f"two models are named {name!r}; pass --model NAME=FOLDER with "
                            "different names")
        models[name] = folder
    return models


def _main(argv):
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535. Received --port {args.port}")
    if args.max_batch_size < 1:
        raise UserError(f"--max_batch_size must be at least 1. "
                        f"Received --max_batch_size {args.max_batch_size}")
    if args.batch_timeout_micros < 0:
        raise UserError(f"--batch_timeout_micros must be 0 or more. "
                        f"Received --batch_timeout_micros {args.batch_timeout_micros}")
    if not args.max_upload_mb > 0:
        raise UserError(f"--max_upload_mb must be more than 0. "
                        f"Received --max_upload_mb {args.max_upload_mb}")
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"kapps serve needs {', '.join(missing)}; install them with "
                        "pip install \"kapps[serve]\"")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1. Received --threads {args.threads}")
    models = parse_models(args.model)
    from retrain.prediction.predictor import check_model
    from retrain.prediction.translations import read_translations

    for folder in models.values():  # a typo answers now, not after TensorFlow and the others
        check_model(folder)
    if args.translations:
        read_translations(args.translations)
    from retrain.serving import serve

    serve(models, host=args.host, port=args.port, translations=args.translations,
          max_batch_size=args.max_batch_size, batch_timeout_micros=args.batch_timeout_micros,
          max_upload_mb=args.max_upload_mb, runtime=args.runtime, threads=args.threads)
    return 0


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return run_cli(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    from kapps.process import exit_now

    exit_now(main())
