"""The `kapps` command line: a thin dispatcher over the library's own command modules.

Each sub-command lives with its library (`kapps models` in `kapps.cli_models`,
`kapps retrain` in `retrain.cli.retrain`, ...) and is imported only when used. No
command imports TensorFlow before its flags are parsed and its files checked, so
`--help`, a mistake and `kapps models` answer in a fraction of a second.
"""
import importlib
import sys

from kapps.process import command_line, exit_now

# sub-command -> (module with a `main(argv)` function, one-line help)
COMMANDS = {
    "models": ("kapps.cli_models", "print a table of every architecture (size, params, MACs)"),
    "summary": ("kapps.cli_models", "print one architecture's per-layer params and MACs"),
    "retrain": ("retrain.cli.retrain", "train a classifier on a folder of labelled pictures"),
    "review": ("retrain.cli.review", "find the pictures whose labels are probably wrong"),
    "predict": ("retrain.cli.predict", "top-k answers for new pictures"),
    "serve": ("retrain.cli.serve", "a prediction service: TF Serving's REST API and a web page"),
    "export": ("retrain.cli.export", "a trained model as a SavedModel, LiteRT or ONNX file"),
    "tune": ("tuning.cli_tune", "hyperparameter search with keras-tuner"),
    "imagenet": ("retrain.cli.imagenet", "an ImageNet classifier as a model folder to predict with"),
}

def usage():
    lines = ["usage: kapps COMMAND [options]   (kapps COMMAND --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"kapps: unknown command {command!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main([command] + rest if module.__name__ == "kapps.cli_models" else rest)


def entry():
    """The `kapps` console script: `main`, then a quick exit (see `kapps.process.exit_now`)."""
    command_line()
    exit_now(main())


if __name__ == "__main__":
    entry()
