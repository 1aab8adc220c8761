"""Seconds per step of a run, for `metrics.json` and the benchmarks.

A retrain is start-up, scan, base, bottlenecks, fit, evaluate and export; knowing
which one a run spent its time on is what tells where to cut next.
"""
import contextlib
import time

# From this many pictures on, the scan and the head fit show a progress bar (the feature
# pass always does): below, each takes a few seconds at most, and a bar only adds lines.
PROGRESS_MIN = 5000


def progress_bar(total, unit, verbose, pictures=None, **options):
    """Keras' `Progbar` (count, rate, ETA) over `total` `unit`s, or None when `verbose` is
    0 or the step's `pictures` (`total` by default) are under `PROGRESS_MIN`. Keras is
    imported only for a bar; `options` go to `Progbar`."""
    if not verbose or (total if pictures is None else pictures) < PROGRESS_MIN:
        return None
    from keras.utils import Progbar

    return Progbar(total, unit_name=unit, verbose=verbose, **options)


class StepTimes(dict):
    """{step name: seconds}, filled by `with times.step("scan"): ...` (repeats add up)."""

    @contextlib.contextmanager
    def step(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - start, 3)
