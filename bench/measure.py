"""Run a whole command as a user would and measure its wall time and peak memory.

Peak memory is the child's maximum resident set size, read from `getrusage` in a
small wrapper process so each command is measured on its own.
"""
import json
import os
import subprocess
import sys
import time

_WRAPPER = r"""
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024, "rc": done.returncode,
                  "stdout": done.stdout, "stderr": done.stderr}))
"""


def run(command, env=None, cwd=None):
    """Run `command` (a list); returns dict(seconds, peak_mb, rc, stdout, stderr, launched).

    `launched` is the Unix time just before the command started, so a run's own
    timestamps (`metrics.json`'s `started_at`) tell how long its start-up took.
    Raises `RuntimeError` with the command's last lines of output if it fails.
    """
    env = dict(os.environ if env is None else env, TF_CPP_MIN_LOG_LEVEL="2")
    launched = time.time()
    out = subprocess.run([sys.executable, "-c", _WRAPPER] + list(command), capture_output=True,
                         text=True, env=env, cwd=cwd, check=True)
    result = json.loads(out.stdout)
    result["launched"] = launched
    if result["rc"] != 0:
        tail = "\n".join((result["stdout"] + result["stderr"]).splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} failed ({result['rc']}):\n{tail}")
    return result


def python(*args):
    """`[python, *args]` with this interpreter, for `run`."""
    return [sys.executable] + [str(a) for a in args]


def code_env(root):
    """`run`'s keyword arguments that run kapps from the checkout at `root` ({}: this one).

    Lets one benchmark run put the code of an earlier commit (`git archive`) beside
    today's, so a before/after ratio is measured on the same machine at the same time.
    Both the import path and the working directory are set: `python -m` looks in the
    working directory first.
    """
    if root is None:
        return {}
    root = os.path.abspath(root)
    return {"env": dict(os.environ, PYTHONPATH=root), "cwd": root}


def stamp():
    return time.strftime("%Y-%m-%d %H:%M")
