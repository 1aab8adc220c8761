"""CLI: the command-line modules, one a `kapps` subcommand; they parse flags and call
the library. `kapps` (kapps/cli.py) and `python -m retrain` dispatch to them.

May import: any room of retrain.
"""
