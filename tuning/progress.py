"""One line per finished trial, and the time budget's arithmetic.

The line says which trial of how many, its hyperparameters, its score, the best so
far and an ETA from the measured trial times:

    trial 3/12 learning_rate=0.01 optimizer=adam dropout=0.5 | val_accuracy 0.8125 | best 0.8750 (trial 1) | 3.2s, ETA 29s
"""
import re
import sys

from kapps.errors import UserError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text):
    """Seconds in `text`: `90s`, `30m`, `2h`, `1h30m`, or a plain number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        spec = str(text).strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", spec)
        if re.fullmatch(r"\d+(?:\.\d+)?", spec):
            seconds = float(spec)
        elif parts and "".join(n + u for n, u in parts) == spec:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
        else:
            raise UserError(f"--time_budget {text!r}: write a duration such as 90s, 30m, 2h "
                            f"or 1h30m.")
    if seconds <= 0:
        raise UserError(f"--time_budget {text!r}: the budget must be more than zero.")
    return seconds


def format_duration(seconds):
    """`12.3s`, `4m05s`, `2h03m`: short, and precise where it matters."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_value(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """Prints the per-trial line.

    Args:
        total: the number of trials the search will run, if known.
        objective: the objective's name, e.g. `val_accuracy`.
        stream: where to print. Defaults to `sys.stdout`.
    """

    def __init__(self, total=None, objective="val_accuracy", stream=None):
        self.total = total
        self.objective = objective
        self.stream = stream

    def line(self, number, values, score, status, best, seconds, mean_seconds, done):
        """The text for trial `number` (1-based); `best` is `(score, number)` or None."""
        shown = " ".join(f"{name}={format_value(v)}" for name, v in values.items()
                         if not name.startswith("tuner/") or name == "tuner/epochs")
        of = f"/{self.total}" if self.total else ""
        parts = [f"trial {number}{of} {shown}".rstrip()]
        if status == "COMPLETED" and score is not None:
            parts.append(f"{self.objective} {score:.4f}")
        else:
            parts.append(status)
        if best is not None and best[0] is not None:
            parts.append(f"best {best[0]:.4f} (trial {best[1]})")
        timing = format_duration(seconds)
        if self.total and mean_seconds:
            left = max(0, self.total - done)
            timing += f", ETA {format_duration(left * mean_seconds)}" if left else ", done"
        parts.append(timing)
        return " | ".join(parts)

    def report(self, *args, **kwargs):
        print(self.line(*args, **kwargs), file=self.stream or sys.stdout, flush=True)
