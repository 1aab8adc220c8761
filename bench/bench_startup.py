"""How long the `kapps` command takes to answer when it has no real work to do.

Help, a flag mistake, a missing file and the `kapps models` table should answer
without importing TensorFlow (about 5 s on 2 cores). Each command runs as a fresh
process, as a user types it, `--repeat` times; the median and the best are printed
as a Markdown table, with whether TensorFlow was imported by the time the process ended.

    python bench/bench_startup.py [--repeat 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# Runs `kapps ARGS...` and writes whether TensorFlow was imported to $BENCH_TF_FILE when the
# process ends, whichever way it ends (`os._exit` after a command, `SystemExit` from argparse).
_WRAPPER = r"""
import os, runpy, sys
def _note():
    with open(os.environ["BENCH_TF_FILE"], "w") as f:
        f.write("yes" if "tensorflow" in sys.modules else "no")
_real_exit = os._exit
def _exit(code):
    _note()
    _real_exit(code)
os._exit = _exit
sys.argv = ["kapps"] + sys.argv[1:]
try:
    runpy.run_module("kapps.cli", run_name="__main__")
finally:
    _note()
"""

COMMANDS = [
    ["--help"],
    ["retrain", "--help"],
    ["predict", "--help"],
    ["tune", "--help"],
    ["retrain", "--epochz", "3"],                     # a flag mistake (argparse)
    ["retrain", "--image_dir", "/nonexistent/pets"],   # a missing folder
    ["predict", "--model", "/nonexistent", "x.png"],   # a missing model
    ["tune", "--image_dir", "/nonexistent/pets"],
    ["models"],
]


def time_command(argv, env):
    """(seconds, exit status, whether tensorflow was imported) of one `kapps` process."""
    with tempfile.NamedTemporaryFile("r") as note:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _WRAPPER] + argv, capture_output=True,
                              text=True, env=dict(env, BENCH_TF_FILE=note.name))
        seconds = time.perf_counter() - start
        return seconds, done.returncode, note.read() == "yes"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # A fresh HOME, as a new user has: no caches of ours to lean on.
    env = dict(os.environ, HOME=tempfile.mkdtemp(prefix="kapps_home_"))
    print(f"| command ({time.strftime('%Y-%m-%d %H:%M')}) | exit | TensorFlow imported "
          f"| median s | best s |")
    print("|---|---|---|---|---|")
    for argv in COMMANDS:
        runs = [time_command(argv, env) for _ in range(args.repeat)]
        seconds = [r[0] for r in runs]
        print(f"| `kapps {' '.join(argv)}` | {runs[0][1]} | {'yes' if runs[0][2] else 'no'} "
              f"| {statistics.median(seconds):.2f} | {min(seconds):.2f} |", flush=True)


if __name__ == "__main__":
    main()
