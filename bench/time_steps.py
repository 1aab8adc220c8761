"""Seconds per step of one `retrain` run, for kapps code that does not record `timings`.

    cd $BEFORE && PYTHONPATH=$BEFORE python $KAPPS/bench/time_steps.py -- --image_dir ... (retrain flags)

Runs `kapps retrain` in this process with the step functions of `retrain.job` and
`retrain.train.prepare` wrapped in timers (scan, base, bottlenecks, fit, evaluate, export),
so an earlier checkout (`git archive main`, first on `PYTHONPATH`, and run from its
folder) can be split into the same steps as `metrics.json`'s `timings` of today's
code. Start-up is from this process's start to the first step. Prints one JSON line.
"""
import json
import os
import sys
import time

STARTED = time.time()

WRAPPED = {  # step: (module, function)
    "scan": ("retrain.train.prepare", "scan_image_folder"),
    "base": ("retrain.train.prepare", "build_base"),
    "bottlenecks": ("retrain.train.bottlenecks", "cached_features"),
    "fit": ("retrain.job", "train"),
    "evaluate": ("retrain.job", "predict_split"),
    "export": ("retrain.job", "export_all"),
}


def main():
    import importlib

    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    times = {}
    first = []

    def timed(step, fn):
        def wrapper(*args, **kwargs):
            start = time.time()
            first.append(start)
            try:
                return fn(*args, **kwargs)
            finally:
                times[step] = round(times.get(step, 0.0) + time.time() - start, 3)
        return wrapper

    for step, (module, name) in WRAPPED.items():
        mod = importlib.import_module(module)
        setattr(mod, name, timed(step, getattr(mod, name)))
    from retrain.cli.retrain import main as retrain_main

    code = retrain_main(argv)
    steps = {"start-up": round(min(first) - STARTED, 3) if first else None, **times,
             "total": round(time.time() - STARTED, 3)}
    print(json.dumps({"code": os.path.dirname(importlib.import_module("retrain").__file__),
                      "steps": steps}))
    return code


if __name__ == "__main__":
    sys.exit(main())
