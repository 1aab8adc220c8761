"""`kapps models` and `kapps summary NAME`: the tables of `kapps.report`, printed.

`kapps models` lists every registered architecture with its default input size,
parameters, MACs at that size and pooled feature size; `kapps summary NAME
[--input_size N]` prints one architecture layer by layer, with totals.

`kapps models` reads the measured table `kapps.stats.MODEL_STATS` and never imports
TensorFlow; `kapps summary` builds the network, so it imports TensorFlow after
parsing its flags.
"""
import argparse

from kapps.errors import UserError, run_cli
from kapps.stats import MODEL_STATS


def _num(value):
    return "?" if value is None else f"{value:,}"


def imagenet_column(name):
    """`here` (ImageNet weights on this machine), `download` (published, fetched on first
    use), or `none` (trained from scratch)."""
    from kapps.stats import has_imagenet_weights, imagenet_weights_here

    if not has_imagenet_weights(name):
        return "none"
    return "here" if imagenet_weights_here(name) else "download"


def format_models(stats):
    """Text table of `ModelStats`, one architecture per line."""
    width = max([14] + [len(s.name) for s in stats])
    header = (f"{'name':<{width}} {'input':>7} {'params':>13} {'MACs':>16} {'features':>8}  "
              "ImageNet")
    lines = [header, "-" * len(header)]
    for s in stats:
        lines.append(f"{s.name:<{width}} {s.input_size:>7} {_num(s.params):>13} "
                     f"{_num(s.macs):>16} {_num(s.feature_size):>8}  {imagenet_column(s.name)}")
    lines.append("params and MACs: with each builder's default classifier top; "
                 "features: length of the average-pooled output (include_top=False).")
    lines.append("ImageNet weights: here (on this machine, offline), download (fetched on "
                 "first use), none (`kapps retrain` trains it from scratch).")
    return "\n".join(lines)


def format_summary(name, size, include_top, rows):
    """Text table of `LayerRow`s followed by the totals."""
    width = max([len("layer")] + [len(row.name) for row in rows])
    header = (f"{'layer':<{width}} {'kind':<22} {'output shape':<20} {'params':>12} "
              f"{'MACs':>16}")
    lines = [f"{name} at {size}x{size}, "
             + ("with its classifier top" if include_top
                else "without the top (it does not fit this size), average-pooled"),
             header, "-" * len(header)]
    for row in rows:
        shape = "x".join("?" if d is None else str(d) for d in row.output_shape)
        lines.append(f"{row.name:<{width}} {row.kind:<22} {shape:<20} {_num(row.params):>12} "
                     f"{_num(row.macs):>16}")
    from kapps import report

    params, macs = report.totals(rows)
    lines += ["-" * len(header), f"total params: {_num(params)}", f"total MACs:   {_num(macs)}"]
    return "\n".join(lines)


def _parser():
    parser = argparse.ArgumentParser(prog="kapps", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="every architecture: input size, params, MACs, features")
    summary = commands.add_parser("summary", help="one architecture, layer by layer")
    summary.add_argument("name", help=f"architecture, one of: {', '.join(MODEL_STATS)}")
    summary.add_argument("--input_size", type=int, default=None,
                         help="input side in pixels (default: the architecture's own)")
    return parser


def _main(argv):
    args = _parser().parse_args(argv)
    if args.command == "models":
        print(format_models(MODEL_STATS.values()))
        return 0
    from kapps.registry import check_model_name
    from kapps.stats import min_size

    try:  # the registry's ValueError is the library's; here it is the user's mistake
        check_model_name(args.name)
    except ValueError as err:
        raise UserError(f"kapps summary {args.name}: {err}") from None
    name = args.name.lower()
    least = min_size(name)
    if args.input_size is not None and args.input_size < least:
        raise UserError(f"--input_size must be at least {least} for {name}. "
                        f"Received: {args.input_size}")
    from kapps import report
    model, size, include_top = report.build_for_report(args.name, args.input_size)
    print(format_summary(args.name.lower(), size, include_top, report.layer_table(model)))
    return 0


def main(argv=None):
    """Entry point: `argv[0]` is `models` or `summary`; returns the exit status."""
    return run_cli(_main, argv)
