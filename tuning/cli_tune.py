"""`kapps tune` (also `python -m tuning`): flags in, `tuning.search()` out.

Flag defaults are read from `RetrainConfig`, so they are written once. Running the
same command again resumes the search; Ctrl-C stops it and says so.
"""
import argparse
import dataclasses
import sys

from kapps.errors import UserError, run_cli
from tuning.defaults import (DEFAULT_DIRECTORY, DEFAULT_TRIALS_PER_PROCESS, TUNER_NAMES,
                             fits_one_process)

# Flags that set `RetrainConfig` fields of the same name (their help is the field's),
# with what a search adds to their meaning.
CONFIG_FLAGS = {
    "image_dir": "",
    "architecture": "; search several with an `architecture` list in --space",
    "weights": "",
    "base_layer": "",
    "model_dir": "",
    "bottleneck_dir": "; shared by all trials",
    "image_size": "",
    "fine_tune": "; 'none' trains heads on cached features (seconds per trial), with 'top:N' "
                 "N is searched too",
    "epochs": "; per trial (Hyperband: the most a trial gets)",
    "seed": "; seeds the tuner and each trial (seed + trial number)",
    "runtime": "; the features are extracted once, for every head-only trial",
}


def build_parser():
    from retrain.config import RetrainConfig
    fields = {f.name: f for f in dataclasses.fields(RetrainConfig)}
    p = argparse.ArgumentParser(
        prog="kapps tune",
        description="Hyperparameter search over retraining settings with keras-tuner. "
                    "Run the same command again to resume a stopped search.")
    for name, more in CONFIG_FLAGS.items():
        field = fields[name]
        kind = int if name in ("image_size", "epochs", "seed") else str
        default = "" if field.default is None else f" Default: {field.default}."
        p.add_argument(f"--{name}", type=kind, default=field.default,
                       help=f"{field.metadata['help']}{more}.{default}")
    p.add_argument("--distribute", action="store_true",
                   help="train each trial with MirroredStrategy over the local devices")
    p.add_argument("--tuner", choices=TUNER_NAMES, default="random",
                   help="search algorithm. Default: random.")
    p.add_argument("--max_trials", type=int, default=None,
                   help="most trials (default: 10 for random/bayesian, the whole grid, "
                        "Hyperband's schedule)")
    p.add_argument("--objective", default="val_accuracy",
                   help="metric to optimise, NAME or NAME:max|min. Default: val_accuracy.")
    p.add_argument("--space", default=None,
                   help="JSON or YAML file: name -> list of values, or "
                        "{min, max, step, sampling}. Default: a built-in space.")
    p.add_argument("--directory", default=DEFAULT_DIRECTORY,
                   help=f"where projects are kept. Default: {DEFAULT_DIRECTORY}.")
    p.add_argument("--project_name", default=None,
                   help="project folder name. Default: <tuner>_<architecture>.")
    p.add_argument("--overwrite", action="store_true",
                   help="start the project afresh instead of resuming it")
    p.add_argument("--time_budget", default=None,
                   help="stop before a trial that would not fit, e.g. 90s, 30m, 2h")
    p.add_argument("--export_best", default=None, metavar="DIR",
                   help="retrain the best settings on train+validation and export to DIR")
    p.add_argument("--trials_per_process", type=int, default=DEFAULT_TRIALS_PER_PROCESS,
                   help="run trials in fresh processes of at most N trials each, so memory "
                        "stays flat in long searches; 0: all in this process, as is a search "
                        "of at most N trials (--max_trials). Default: "
                        f"{DEFAULT_TRIALS_PER_PROCESS}.")
    p.add_argument("--summaries", action="store_true",
                   help="write TensorBoard logs of each trial to DIRECTORY/PROJECT_NAME/"
                        "summaries/trial_NNN (open them with `tensorboard --logdir "
                        "DIRECTORY/PROJECT_NAME/summaries`)")
    p.add_argument("--fit_verbose", type=int, default=0,
                   help="Keras fit verbosity inside trials. Default: 0.")
    return p


def check_flags(args, config):
    """`UserError` for the first flag no search accepts (the rule, then the value), before
    TensorFlow or keras-tuner loads: the retraining flags (`RetrainConfig.check`), the
    search's own, the --space file and the image folder."""
    from retrain.data.dataset import check_image_folder
    from tuning.progress import parse_duration
    from tuning.space import load_space

    if not config.image_dir:
        raise UserError("No image folder given: pass --image_dir FOLDER (one sub-folder per "
                        "class).")
    config.check()
    if args.max_trials is not None and args.max_trials < 1:
        raise UserError(f"--max_trials must be at least 1. Received: {args.max_trials}")
    if args.trials_per_process < 0:
        raise UserError("--trials_per_process must be at least 0 (0: every trial in this "
                        f"process). Received: {args.trials_per_process}")
    if args.fit_verbose not in (0, 1, 2):
        raise UserError(f"--fit_verbose must be 0, 1 or 2. Received: {args.fit_verbose}")
    direction = args.objective.partition(":")[2]
    if direction not in ("", "max", "min"):
        raise UserError(f"--objective must be NAME or NAME:max or NAME:min. Received: "
                        f"{args.objective}")
    if args.time_budget is not None:
        parse_duration(args.time_budget)
    load_space(args.space, args.tuner, config.fine_tune)
    check_image_folder(config.image_dir)


def _main(argv):
    from retrain.config import RetrainConfig

    args = build_parser().parse_args(argv)
    fields = {name: getattr(args, name) for name in CONFIG_FLAGS}
    image_dir = fields.pop("image_dir")
    check_flags(args, RetrainConfig(image_dir=image_dir, **fields))
    # Pictures decoded while TensorFlow starts are only used where the trials run.
    if not args.distribute and fits_one_process(args.tuner, args.max_trials,
                                                args.trials_per_process):
        from retrain.cli.retrain import start_decoding_ahead

        start_decoding_ahead(RetrainConfig(image_dir=image_dir, **fields))
    from kapps.process import import_tensorflow

    import_tensorflow()  # before keras-tuner imports it, so its start-up chatter stays hidden
    from tuning.search import search

    try:
        search(image_dir, tuner=args.tuner, space=args.space, max_trials=args.max_trials,
               objective=args.objective, directory=args.directory,
               project_name=args.project_name, overwrite=args.overwrite,
               time_budget=args.time_budget, export_best=args.export_best,
               fit_verbose=args.fit_verbose,
               distribute="mirrored" if args.distribute else "none",  # never TF_CONFIG's
               summaries=args.summaries,
               trials_per_process=args.trials_per_process, **fields)
    except KeyboardInterrupt:
        print("\nInterrupted: finished trials are saved; run the same command to resume.",
              file=sys.stderr)
        return 130
    return 0


def main(argv=None):
    return run_cli(_main, sys.argv[1:] if argv is None else argv)
