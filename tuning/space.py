"""The search space: which retraining settings a search varies, and over which values.

A space maps a hyperparameter name to a list of values (a keras-tuner `Choice`), a
range `{"min": ..., "max": ..., "step": ..., "sampling": "linear" | "log"}` (an `Int`
or a `Float`), or a single value (fixed). Names left out keep the retraining
config's value and are not searched. Spaces come from a JSON or YAML file
(`--space FILE`), a dict, or the defaults below.

Each hyperparameter sets one `RetrainConfig` field; two are translated:
`hidden_layer` (true/false) switches the hidden dense layer whose width
`hidden_units` is searched only when it is on (a conditional hyperparameter), and
`fine_tune_layers` N sets `fine_tune="top:N"` (0 means `"none"`, a frozen base).
"""
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from kapps.errors import UserError
from retrain.config import OPTIMIZERS

# Width of the hidden layer when `hidden_layer` is searched but `hidden_units` is not.
DEFAULT_HIDDEN_UNITS = 128


def _architectures():
    from kapps.registry import list_models
    return list_models()


@dataclass(frozen=True)
class Knob:
    """One searchable setting: its value type, the config field it sets, its rule."""
    kind: type
    field: Optional[str]
    rule: str
    valid: Callable[[Any], bool]
    choices: Optional[Callable[[], tuple]] = None


# Declaration order: the grid varies the last name fastest, and a conditional entry
# (`hidden_units`) must follow its parent (`hidden_layer`).
KNOBS = {
    "architecture": Knob(str, "architecture", "a registered architecture",
                         lambda v: v in _architectures(), _architectures),
    "fine_tune_layers": Knob(int, "fine_tune", "an integer >= 0", lambda v: v >= 0),
    "learning_rate": Knob(float, "learning_rate", "a number > 0", lambda v: v > 0),
    "optimizer": Knob(str, "optimizer", "a known optimizer", lambda v: v in OPTIMIZERS,
                      lambda: OPTIMIZERS),
    "batch_size": Knob(int, "train_batch_size", "an integer >= 1", lambda v: v >= 1),
    "epochs": Knob(int, "epochs", "an integer >= 1", lambda v: v >= 1),
    "dropout": Knob(float, "dropout", "a number in [0, 1)", lambda v: 0 <= v < 1),
    "label_smoothing": Knob(float, "label_smoothing", "a number in [0, 1)",
                            lambda v: 0 <= v < 1),
    "hidden_layer": Knob(bool, None, "true or false", lambda v: True),
    "hidden_units": Knob(int, "hidden_units", "an integer >= 0", lambda v: v >= 0),
    "l2": Knob(float, "l2", "a number > 0", lambda v: v > 0),
}
# Settings only Keras' fit uses: a space that searches one of them fits every head with
# Keras' fit (`--head_fit auto`), so the search varies what it says it varies. `l2` is
# the L-BFGS fit's one setting: a space of `l2` alone keeps each trial to one convex fit.
KERAS_FIT_KNOBS = ("learning_rate", "optimizer", "batch_size", "epochs", "dropout",
                   "label_smoothing")

# Searched by random, Bayesian and Hyperband tuners when no space is given.
DEFAULT_SPACE = {
    "learning_rate": {"min": 1e-4, "max": 1e-1, "sampling": "log"},
    "optimizer": ["adam", "sgd", "rmsprop"],
    "batch_size": [16, 32, 64],
    "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
    "label_smoothing": [0.0, 0.1, 0.2],
    "hidden_layer": [False, True],
    "hidden_units": [64, 128, 256],
}
# A grid needs few discrete values: 3 x 2 x 3 = 18 trials.
DEFAULT_GRID = {
    "learning_rate": [1e-3, 1e-2, 1e-1],
    "optimizer": ["adam", "sgd"],
    "dropout": [0.0, 0.2, 0.5],
}


@dataclass(frozen=True)
class Choice:
    values: tuple

    def declare(self, hp, name):
        if isinstance(self.values[0], bool):
            # keras-tuner's Choice turns booleans into 0/1; Boolean keeps them.
            if len(self.values) == 1:
                return hp.Fixed(name, self.values[0])
            return hp.Boolean(name, default=self.values[0])
        return hp.Choice(name, list(self.values))

    def to_json(self):
        return list(self.values)


@dataclass(frozen=True)
class Range:
    min: float
    max: float
    step: Optional[float] = None
    sampling: str = "linear"
    kind: type = float

    def declare(self, hp, name):
        make = hp.Int if self.kind is int else hp.Float
        return make(name, self.min, self.max, step=self.step, sampling=self.sampling)

    def discrete(self):
        return self.step is not None or (self.kind is int and self.sampling == "linear")

    def to_json(self):
        out = {"min": self.min, "max": self.max, "sampling": self.sampling}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Fixed:
    value: Any

    def declare(self, hp, name):
        return hp.Fixed(name, self.value)

    def to_json(self):
        return self.value


class SearchSpace:
    """A checked search space; `declare(hp)` registers it with keras-tuner.

    Args:
        entries: `{name: Choice | Range | Fixed}`.
        source: where it came from (a file name, "default space"), for error messages.
    """

    def __init__(self, entries, source="search space"):
        self.entries = {name: entries[name] for name in KNOBS if name in entries}
        self.source = source

    @classmethod
    def from_dict(cls, spec, source="search space"):
        """Check a `{name: list | range dict | value}` mapping; UserError naming a bad entry."""
        if not isinstance(spec, dict):
            raise UserError(f"{source}: expected a mapping of hyperparameter names to values "
                            f"or ranges, found {type(spec).__name__}.")
        unknown = [name for name in spec if name not in KNOBS]
        if unknown:
            raise UserError(f"{source}: unknown hyperparameter {unknown[0]!r}. Known names: "
                            f"{', '.join(KNOBS)}.")
        return cls({name: _entry(name, value, source) for name, value in spec.items()}, source)

    @classmethod
    def from_file(cls, path):
        """Read a JSON or YAML space file (`.yaml`/`.yml` is YAML, anything else JSON)."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise UserError(f"--space {path}: cannot read it ({err.strerror}).") from None
        try:
            if path.lower().endswith((".yaml", ".yml")):
                import yaml
                spec = yaml.safe_load(text)
            else:
                spec = json.loads(text)
        except Exception as err:  # the parsers' own error types differ
            raise UserError(f"--space {path}{_where_in_file(err)}: not valid "
                            f"{'YAML' if path.lower().endswith(('.yaml', '.yml')) else 'JSON'}"
                            f" ({_problem(err)}).") from None
        return cls.from_dict(spec, source=f"--space {path}")

    def declare(self, hp):
        """Register every entry with `hp`; returns `{name: value}` of the active ones."""
        values = {}
        for name, entry in self.entries.items():
            if name == "hidden_units" and "hidden_layer" in self.entries:
                with hp.conditional_scope("hidden_layer", [True]):
                    value = entry.declare(hp, name)
            else:
                value = entry.declare(hp, name)
            if value is not None:
                values[name] = value
        return values

    def check_grid(self):
        """UserError if an entry has no finite list of values (a continuous range)."""
        for name, entry in self.entries.items():
            if isinstance(entry, Range) and not entry.discrete():
                raise UserError(
                    f"{self.source}: entry {name!r} is a continuous range "
                    f"({entry.min}..{entry.max}), which a grid cannot enumerate. Give a list "
                    f"of values or a \"step\", or use --tuner random|bayesian|hyperband.")

    def to_json(self):
        return {name: entry.to_json() for name, entry in self.entries.items()}

    def searches_keras_fit(self):
        """Whether the space varies a setting only Keras' fit uses (`KERAS_FIT_KNOBS`)."""
        return any(name in self.entries and not isinstance(self.entries[name], Fixed)
                   for name in KERAS_FIT_KNOBS)

    def __repr__(self):
        return f"SearchSpace({self.to_json()})"


def _where_in_file(err):
    """`, line N` of a parser's error: PyYAML marks it (0-based), json counts from 1."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = mark.line + 1 if mark is not None else getattr(err, "lineno", None)
    return f", line {line}" if line else ""


def _problem(err):
    """What the parser found wrong, without its multi-line position report."""
    text = getattr(err, "problem", None) or getattr(err, "msg", None) or str(err)
    return text.splitlines()[0] if text else type(err).__name__


def _entry(name, value, source):
    knob = KNOBS[name]
    where = f"{source}: entry {name!r}"
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: the list of values is empty.")
        values = tuple(_scalar(knob, v, where) for v in value)
        if len(set(values)) != len(values):
            raise UserError(f"{where}: the list {value} repeats a value.")
        return Choice(values)
    if isinstance(value, dict):
        return _range(knob, value, where)
    return Fixed(_scalar(knob, value, where))


def _scalar(knob, value, where):
    ok = isinstance(value, bool) if knob.kind is bool else (
        isinstance(value, str) if knob.kind is str else (
            isinstance(value, (int, float)) and not isinstance(value, bool)))
    if ok and knob.kind is int and value != int(value):
        ok = False
    if ok:
        value = knob.kind(value)
        ok = not (isinstance(value, float) and not math.isfinite(value)) and knob.valid(value)
    if not ok:
        choices = f" ({', '.join(knob.choices())})" if knob.choices else ""
        raise UserError(f"{where}: {value!r} is not {knob.rule}{choices}.")
    return value


def _range(knob, spec, where):
    if knob.kind not in (int, float):
        raise UserError(f"{where}: a range needs a numeric hyperparameter; give a list of "
                        f"values instead.")
    extra = sorted(set(spec) - {"min", "max", "step", "sampling"})
    if extra or "min" not in spec or "max" not in spec:
        raise UserError(f"{where}: a range is {{\"min\": ..., \"max\": ..., \"step\": ... "
                        f"(optional), \"sampling\": \"linear\" | \"log\" (optional)}}; "
                        f"found keys {sorted(spec)}.")
    low, high = _scalar(knob, spec["min"], where), _scalar(knob, spec["max"], where)
    if low > high:
        raise UserError(f"{where}: min {low} is greater than max {high}.")
    sampling = spec.get("sampling", "linear")
    if sampling not in ("linear", "log"):
        raise UserError(f"{where}: sampling must be \"linear\" or \"log\", found {sampling!r}.")
    if sampling == "log" and low <= 0:
        raise UserError(f"{where}: log sampling needs min > 0, found {low}.")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or (
                knob.kind is int and step != int(step)):
            raise UserError(f"{where}: step must be a positive "
                            f"{'integer' if knob.kind is int else 'number'}, found {step!r}.")
        if sampling == "log" and step <= 1:
            raise UserError(f"{where}: with log sampling the step multiplies, so it must be "
                            f"> 1 (e.g. 10), found {step}.")
        step = knob.kind(step)
    return Range(low, high, step, sampling, knob.kind)


def load_space(space=None, tuner="random", fine_tune="none"):
    """A `SearchSpace` from `space`: a SearchSpace, a dict, a file path, or None (defaults).

    The default space depends on the tuner (a grid gets a small discrete one) and, for
    fine-tuning runs (`fine_tune="top:N"`), also searches N among N/2, N, 2N.
    """
    if isinstance(space, SearchSpace):
        result = space
    elif isinstance(space, dict):
        result = SearchSpace.from_dict(space)
    elif space is not None:
        result = SearchSpace.from_file(space)
    else:
        spec = dict(DEFAULT_GRID if tuner == "grid" else DEFAULT_SPACE)
        mode = str(fine_tune).strip().lower()
        if mode.startswith("top:") and mode[4:].isdigit() and int(mode[4:]) > 0:
            n = int(mode[4:])
            spec["fine_tune_layers"] = sorted({max(1, n // 2), n, 2 * n})
        result = SearchSpace.from_dict(spec, source="default space")
    if tuner == "grid":
        result.check_grid()
    return result


def config_fields(values):
    """Translate hyperparameter values into `RetrainConfig` field overrides."""
    fields = {}
    for name, value in values.items():
        knob = KNOBS.get(name)
        if knob is None or knob.field is None:
            continue  # keras-tuner's own entries (`tuner/epochs`, ...) and `hidden_layer`
        if name == "fine_tune_layers":
            value = f"top:{value}" if value else "none"
        fields[knob.field] = value
    if "hidden_layer" in values:
        fields["hidden_units"] = (values.get("hidden_units") or DEFAULT_HIDDEN_UNITS) \
            if values["hidden_layer"] else 0
    return fields
