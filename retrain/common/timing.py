"""Seconds per step of a run, for `metrics.json` and the benchmarks.

A retrain is start-up, scan, base, bottlenecks, fit, evaluate and export; knowing
which one a run spent its time on is what tells where to cut next.
"""
import contextlib
import time


class StepTimes(dict):
    """{step name: seconds}, filled by `with times.step("scan"): ...` (repeats add up)."""

    @contextlib.contextmanager
    def step(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - start, 3)
