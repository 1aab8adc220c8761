"""The default head fit: a multinomial logistic regression on the cached features, solved
to its optimum by L-BFGS, its L2 strength chosen on the validation pictures.

With a frozen base and no hidden layer, the head is a softmax of a linear function of
fixed features, so its L2-regularised cross-entropy is convex: its optimum can be found,
not guessed with a learning rate and an epoch count. This is the linear-probe protocol of
CLIP (Radford et al. 2021: scikit-learn's L-BFGS logistic regression, the L2 strength
chosen on a validation split from a small sweep). The features are centred and divided by
one scale for all of them (`Scaler`), which keeps the geometry Keras' fit works in, then
the scaling is folded into the Dense layer (`Scaler.fold`), so the Keras head, its exports
and serving are the same as a head trained by Keras' fit. On the digits' MobileNetV2
features, scaling each feature to unit variance (as the linear-probe recipes do) scored
1-3 points lower than one scale for all: it lifts nearly silent features to the loudness
of the informative ones (docs/BENCHMARKS.md).

The objective is scikit-learn's (`LogisticRegression(C=C)`, lbfgs, multinomial) with
Keras' label smoothing: on the scaled features `x`, weights `W` (features x classes) and
intercept `b`,

    sum_i s_i CE(t_i, softmax(x_i W + b)) / sum_i s_i + |W|^2 / (2 C sum_i s_i)

with `s_i` the class weight of picture i (all 1 without `--class_weights`) and `t_i` its
one-hot label smoothed as `CategoricalCrossentropy(label_smoothing=...)` does; `l2` is
1/C. Smoothing keeps the loss convex and measured +1-2 points here (0.1, the default).
Dropout only acts in Keras' fit. The test suite checks that the fit reaches
scikit-learn's optimum, with and without smoothing.
"""
import time
from dataclasses import dataclass, field

import numpy as np

# C (= 1/l2) tried from strong to weak regularisation when --l2 is not given, each fit
# starting from the one before; the sweep stops at the first C that scores worse than
# the best so far (validation accuracy against C rose then fell on the digits, and the
# weakest C cost the most iterations).
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# With fewer validation pictures than this in some class, C is chosen by cross-validation
# on the training pictures (5 pictures a class leave 0 or 1 to validation).
MIN_VALIDATION_PER_CLASS = 2
CV_FOLDS = 5
# Neither validation nor two training pictures in every class: the middle of the grid.
FALLBACK_C = 0.1
# Stopping rule: the largest entry of the objective's gradient. The sweep stops its fits
# at SELECT_GTOL (scikit-learn's default tol), on float32 features: the same choice of C
# as float64 on the digits, in half the time. The fit kept runs on in float64 to
# FINAL_GTOL (in float32 above SWEEP_MAX pictures, `_final_fit`): its probabilities are
# scikit-learn's to 1e-5 (tests/test_linear_head.py; at 1e-5 they were 4e-5 apart on
# features whose scales span 3,000x).
SELECT_GTOL = 1e-4
FINAL_GTOL = 1e-6
MAX_ITERATIONS = 2000
# Rows centred and multiplied at a time: the objective holds a float64 copy of 2,048
# rows (21 MB at 1,280 features), never of the whole matrix, so the fit needs the
# float32 features and little more (5 KB a picture at 1,280 features: 51 MB per 10k).
CHUNK_ROWS = 2048
# C is chosen on at most this many training pictures (a stratified draw with the seed):
# each C of the sweep refitted the whole matrix, which made the fit grow faster than the
# folder (471 s at 100k pictures against 2.2 s at 1k). The fit kept then runs on all the
# training pictures, from the chosen C's solution on the draw, in float32 (`_final_fit`).
SWEEP_MAX = 10_000


def keras_fit_reason(config):
    """Why the head of `config` can only be fitted by Keras' fit, or None when the
    L-BFGS fit applies (a frozen base, a linear head, the same features every epoch)."""
    if config.fine_tune_layers() is not None:
        return "fine-tuning trains the base's layers, not only a linear head"
    if config.hidden_units:
        return "a hidden layer makes the loss non-convex"
    if config.distorts:
        return ("distortions give the head another cached variant of each picture every "
                "epoch")
    return None


HEAD_FITS = ("auto", "lbfgs", "keras")


def chosen_head_fit(config):
    """'lbfgs' or 'keras' for `config.head_fit`; `UserError` when it is unknown, or
    'lbfgs' where it does not apply, or --l2 where Keras' fit runs (it would ignore it).
    'auto' is L-BFGS where it applies and nothing was given that only Keras' fit uses: a
    --learning_rate, --epochs other than the default, --how_many_training_steps,
    --early_stopping, an --optimizer other than adam."""
    from kapps.errors import UserError

    fit = str(config.head_fit).lower()
    if fit not in HEAD_FITS:
        raise UserError(f"--head_fit must be one of {', '.join(HEAD_FITS)}. "
                        f"Received: {config.head_fit!r}")
    if config.l2 is not None and not 0 < config.l2 < float("inf"):
        raise UserError(f"--l2 must be more than 0. Received: {config.l2}")
    reason = keras_fit_reason(config)
    if fit == "lbfgs" and reason:
        raise UserError(f"--head_fit lbfgs fits a linear head on a frozen base's features, "
                        f"which does not apply here: {reason}. Leave --head_fit out or pass "
                        f"--head_fit keras.")
    if fit == "auto":
        asked = (config.learning_rate is not None or config.how_many_training_steps
                 or config.epochs != type(config)().epochs or config.early_stopping
                 or config.optimizer != "adam")
        fit = "keras" if reason or asked else "lbfgs"
    if config.l2 is not None and fit == "keras":
        why = reason or ("--head_fit keras" if str(config.head_fit).lower() == "keras" else
                         "asked for by a setting only it uses: --learning_rate, --epochs, "
                         "--optimizer, --how_many_training_steps or --early_stopping")
        raise UserError(f"--l2 sets the L-BFGS head fit, and this run fits by Keras' fit "
                        f"({why}), which does not use it: leave --l2 out"
                        + ("" if reason else ", or leave out what asks for Keras' fit"))
    return fit


def keras_fit_line(config):
    """One line on the Keras fit a config runs, and why it is not the L-BFGS fit."""
    why = keras_fit_reason(config) or ("asked for: --head_fit keras, or a setting only it "
                                       "uses, such as --learning_rate or --epochs")
    return (f"Head fit: Keras' fit, {config.optimizer} at {config.learning_rate:g} "
            f"({why}).")


@dataclass
class Scaler:
    """The training features' per-feature mean and one scale for all features;
    `fold` moves them into a Dense layer's weights."""
    mean: np.ndarray
    scale: float

    @classmethod
    def fit(cls, x):
        # The root of the mean per-feature variance: the scaled features have a mean
        # variance of 1, so C keeps the meaning it has on standardised features. Summed a
        # chunk at a time: `x.var` made a float64 copy of the whole matrix.
        mean = x.mean(axis=0, dtype=np.float64)
        squares = sum(np.square(np.asarray(x[rows], np.float64) - mean).sum(axis=0)
                      for rows in chunks(len(x)))
        scale = float(np.sqrt((squares / max(len(x), 1)).mean())) if len(x) else 0.0
        return cls(mean, scale if scale > 0 else 1.0)

    def __call__(self, x, dtype=np.float64):
        return ((np.asarray(x, np.float64) - self.mean) / self.scale).astype(dtype)

    def copy(self, x, dtype=np.float32):
        """`self(x, dtype)` filled a chunk at a time (no float64 copy of all of `x`)."""
        out = np.empty(x.shape, dtype)
        for rows in chunks(len(x)):
            out[rows] = self(x[rows], dtype)
        return out

    def fold(self, weights, bias):
        """(kernel, bias) acting on raw features as (weights, bias) act on scaled ones."""
        kernel = weights / self.scale
        return kernel, bias - self.mean @ kernel


def chunks(n, rows=CHUNK_ROWS):
    """Slices of `n` rows, `rows` at a time."""
    return [slice(i, min(i + rows, n)) for i in range(0, n, rows)]


def smoothed(labels, n_classes, label_smoothing=0.0):
    """One-hot targets smoothed as Keras' `CategoricalCrossentropy(label_smoothing=...)`."""
    return np.eye(n_classes)[labels] * (1.0 - label_smoothing) + label_smoothing / n_classes


def objective(params, x, targets, weights, c, scale=None, dtype=None):
    """(value, gradient) of the regularised, weighted cross-entropy (see the module doc).

    `x` is the scaled features, or raw ones with their `scale` (a `Scaler`), taken a
    chunk of `CHUNK_ROWS` rows at a time and centred in `dtype` (float32 in the sweep):
    the products with `x` run in that dtype, the rest in float64. The division by the
    scale acts on the weights, not on the features (scaling every chunk took three
    quarters of an evaluation).
    """
    from scipy.special import log_softmax

    n_features, n_classes = x.shape[1], targets.shape[1]
    dtype = x.dtype if dtype is None else dtype
    w = params[:n_features * n_classes].reshape(n_features, n_classes)
    b = params[n_features * n_classes:]
    divide = 1.0 if scale is None else scale.scale
    total = weights.sum()
    value, grad_w, grad_b = np.sum(w * w) / (2 * c * total), w / (c * total), np.zeros(n_classes)
    for rows, part in centred(x, scale, dtype):
        log_p = log_softmax((part @ (w / divide).astype(dtype)).astype(np.float64) + b, axis=1)
        value = value - np.sum(weights[rows] * np.sum(targets[rows] * log_p, axis=1)) / total
        residual = (np.exp(log_p) - targets[rows]) * (weights[rows] / total)[:, None]
        grad_w = grad_w + (part.T @ residual.astype(dtype)).astype(np.float64) / divide
        grad_b = grad_b + residual.sum(axis=0)
    return value, np.concatenate([grad_w.ravel(), grad_b])


def centred(x, scale, dtype):
    """(rows, x[rows] less the mean of `scale`, in `dtype`) for each chunk of `x`, one
    pass over each chunk (`x` as it is, cast to `dtype`, without a `scale`)."""
    for rows in chunks(len(x)):
        yield rows, (np.asarray(x[rows], dtype) if scale is None
                     else np.subtract(x[rows], scale.mean.astype(dtype), dtype=dtype))


def solve(x, targets, c, weights, start=None, gtol=FINAL_GTOL, scale=None, dtype=None):
    """L-BFGS on `objective` from `start` (zeros by default): (weights, bias, iterations,
    converged, params). `scale` and `dtype` as in `objective`."""
    from scipy.optimize import minimize

    n_features, n_classes = x.shape[1], targets.shape[1]
    params = np.zeros(n_features * n_classes + n_classes) if start is None else start
    result = minimize(objective, params, args=(x, targets, weights, c, scale, dtype), jac=True,
                      method="L-BFGS-B",
                      options={"maxiter": MAX_ITERATIONS, "gtol": gtol,
                               "ftol": 64 * np.finfo(float).eps, "maxls": 50})
    params = result.x
    w = params[:n_features * n_classes].reshape(n_features, n_classes)
    return w, params[n_features * n_classes:], int(result.nit), bool(result.success), params


def scores(x, w, b, scale=None):
    """Softmax probabilities of scaled features `x` (or raw ones and their `scale`), a
    chunk at a time."""
    from scipy.special import log_softmax

    divide = 1.0 if scale is None else scale.scale
    parts = [part @ (w / divide) + b for _, part in centred(x, scale, np.float64)]
    return np.exp(log_softmax(np.concatenate(parts) if parts else
                              np.zeros((0, len(b))), axis=1))


def log_loss(probabilities, labels):
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels],
                                         1e-15, None))))


def _score(probabilities, labels):
    """What a candidate C is ranked by: accuracy, then lower log-loss (as epochs are)."""
    return (float(np.mean(probabilities.argmax(1) == labels)), -log_loss(probabilities, labels))


def _folds(labels, k, seed):
    """Stratified folds of the training pictures: a list of (train index, held-out index)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


@dataclass
class LinearFit:
    """A fitted head: `kernel` and `bias` act on raw features (the scaling folded
    in); the rest says how C was chosen, for the log and metrics.json."""
    kernel: np.ndarray
    bias: np.ndarray
    c: float
    chosen_by: str         # "validation", "cross-validation", "--l2" or "default"
    held_out: int          # pictures C was chosen on
    iterations: int        # of the fit kept
    converged: bool
    grid: list = field(default_factory=list)  # [{"C", "accuracy", "loss"}] per C tried
    seconds: float = 0.0
    folds: int = 0         # of the cross-validation, when it chose C

    def summary(self):
        how = {"validation": f"chosen on {self.held_out} validation pictures",
               "cross-validation": f"chosen by {self.folds}-fold cross-validation on "
                                   f"{self.held_out} training pictures (too few validation "
                                   f"pictures: under {MIN_VALIDATION_PER_CLASS} in a class)",
               "--l2": "from --l2",
               "default": "the middle of the grid (no validation pictures, and too few "
                          "training pictures in a class to cross-validate)"}[self.chosen_by]
        end = "" if self.converged else ", stopped before converging"
        return (f"Head fit: L-BFGS logistic regression on the cached features, "
                f"C={self.c:g} (l2 {1 / self.c:g}) {how}, {self.iterations} iterations"
                f"{end}.")


def fit_linear_head(train_x, train_y, n_classes, val_x=None, val_y=None, sample_weight=None,
                    l2=None, label_smoothing=0.0, seed=0, verbose=0):
    """The L2-regularised logistic regression head of `train_x` (N, D) and `train_y` (N,).

    C is 1/`l2` when given; else chosen from `C_GRID` on (`val_x`, `val_y`) when every
    class has `MIN_VALIDATION_PER_CLASS` pictures there (on at most `SWEEP_MAX` training
    pictures), else by stratified cross-validation on the training pictures (folds drawn
    with `seed`). `train_x` is read, never copied whole (float32 features stay float32);
    `verbose` shows a progress bar over the fits on large folders (`FitProgress`).
    """
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the products are thin (N x D by D x classes) and bound by memory,
    # two threads on a busy 2-core machine were several times slower than one, and one
    # thread sums in the same order on every machine (same seed, same weights).
    with threadpool_limits(1):
        return _fit_linear_head(train_x, train_y, n_classes, val_x, val_y, sample_weight, l2,
                                label_smoothing, seed, verbose)


class FitProgress:
    """A progress bar (Keras' `Progbar`: count, time per fit, ETA) over the fits an L-BFGS
    head fit runs: each C of the sweep, then the fit kept. Shown from `PROGRESS_MIN` training pictures on (below, the fit takes seconds)."""

    def __init__(self, pictures, sweeps, verbose):
        from retrain.common.timing import progress_bar

        self.count = 0
        self.bar = progress_bar(len(C_GRID) * sweeps + 1, "fit", verbose, pictures,
                                stateful_metrics=["C", "iterations"])

    def step(self, c, iterations):
        """One fit ended (at C `c`, after `iterations`)."""
        self.count += 1
        if self.bar is not None:
            self.bar.update(self.count, [("C", c), ("iterations", iterations)])

    def done(self, c, iterations):
        """The fit kept ended: the bar ends, whether or not the sweep stopped early."""
        if self.bar is not None:
            self.bar.update(self.bar.target, [("C", c), ("iterations", iterations)],
                            finalize=True)


def _fit_linear_head(train_x, train_y, n_classes, val_x, val_y, sample_weight, l2,
                     label_smoothing, seed, verbose):
    start = time.perf_counter()
    scale = Scaler.fit(train_x)
    weights = np.ones(len(train_x)) if sample_weight is None \
        else np.asarray(sample_weight, float)
    # Classes without training pictures are left out of the fit (their intercept would
    # fall without end) and given a kernel of 0 and an intercept far below the others.
    present, train_y = np.unique(np.asarray(train_y, int), return_inverse=True)
    k = len(present)
    targets = smoothed(train_y, k, label_smoothing)
    if val_y is not None and len(val_y):
        keep = np.isin(val_y, present)
        if not keep.all():
            val_x, val_y = np.asarray(val_x)[keep], np.asarray(val_y)[keep]
        val_y = np.searchsorted(present, np.asarray(val_y))
    val_counts = np.bincount(np.asarray(val_y if val_y is not None else [], int), minlength=k)
    on_validation = l2 is None and k and val_counts.min() >= MIN_VALIDATION_PER_CLASS
    progress = FitProgress(len(train_y), on_validation, verbose)
    grid, held_out, folds, warm = [], 0, 0, None
    if l2 is not None:
        c, chosen_by = 1.0 / l2, "--l2"
    elif on_validation:
        chosen_by, held_out = "validation", len(val_y)
        c, warm = _choose_on_validation(train_x, targets, weights, train_y, val_x, val_y,
                                        scale, seed, grid, progress)
    else:
        # As on validation, C is chosen on at most SWEEP_MAX pictures (a stratified draw).
        draw = subsample(train_y, SWEEP_MAX, seed)
        some = slice(None) if draw is None else draw
        folds = min(CV_FOLDS, int(np.bincount(train_y[some]).min())) if k else 0
        if folds >= 2:
            chosen_by, held_out = "cross-validation", len(train_y[some])
            c = _cross_validate(scale.copy(train_x if draw is None else train_x[draw]),
                                train_y[some], targets[some], weights[some], folds, seed, grid)
        else:
            c, chosen_by = FALLBACK_C, "default"
    w, b, iterations, converged = _final_fit(train_x, targets, c, weights, warm, scale)
    progress.done(c, iterations)
    kernel, bias = scale.fold(w, b)
    full_kernel = np.zeros((kernel.shape[0], n_classes))
    full_bias = np.full(n_classes, bias.min() - 30.0)
    full_kernel[:, present], full_bias[present] = kernel, bias
    return LinearFit(full_kernel.astype(np.float32), full_bias.astype(np.float32), c,
                     chosen_by, held_out, iterations, converged, grid,
                     time.perf_counter() - start, folds)


def _final_fit(x, targets, c, weights, start, scale):
    """(weights, bias, iterations, converged) of the fit kept, to `FINAL_GTOL`: in float64
    up to `SWEEP_MAX` pictures, in float32 above (then on in float64 only where float32's
    rounding stopped the line search first, not where it ran out of iterations). On 80,198 pictures x 1,280 features float32
    converged in 462 iterations (124 s), its loss 4e-7 (relative) above the float64
    optimum with the same validation and test accuracy; float64 took 690 (466 s)."""
    dtype = np.float32 if len(x) > SWEEP_MAX else np.float64
    w, b, iterations, converged, params = solve(x, targets, c, weights, start, FINAL_GTOL,
                                                scale, dtype)
    if not converged and dtype is np.float32 and iterations < MAX_ITERATIONS:
        w, b, more, converged, _ = solve(x, targets, c, weights, params, FINAL_GTOL, scale,
                                         np.float64)
        iterations += more
    return w, b, iterations, converged


def subsample(labels, limit, seed):
    """Sorted row indices of about `limit` of `labels`, the same share of each class (at
    least one), drawn with `seed`; None when there are no more than `limit` rows."""
    if len(labels) <= limit:
        return None
    rng = np.random.default_rng(seed)
    share = limit / len(labels)
    rows = [rng.choice(np.flatnonzero(labels == k), max(1, round(share * n)), replace=False)
            for k, n in enumerate(np.bincount(labels)) if n]
    return np.sort(np.concatenate(rows))


def _choose_on_validation(train_x, targets, weights, labels, val_x, val_y, scale, seed, grid,
                          progress):
    """(C, the solution to start the fit kept from): `_sweep` scored on the validation
    pictures, on at most `SWEEP_MAX` training pictures (`subsample`) scaled into one
    float32 copy."""
    draw = subsample(labels, SWEEP_MAX, seed)
    some = slice(None) if draw is None else draw
    x32, fits = scale.copy(train_x if draw is None else train_x[draw]), {}

    def score(c):  # each fit starts from the last one, one step stronger
        w, b, iterations, _, fits[c] = solve(x32, targets[some], c, weights[some],
                                             fits[grid[-1]["C"]] if grid else None,
                                             SELECT_GTOL)
        progress.step(c, iterations)
        return _score(scores(val_x, w, b, scale), val_y)

    c = _sweep(score, grid)
    return c, fits[c]


def _sweep(score, grid):
    """The C of `C_GRID`, strong to weak, with the best `score(C)` (accuracy, -loss),
    stopping at the first C that scores below the best so far; appends each C's numbers
    to `grid`."""
    best = None
    for c in C_GRID:
        accuracy, minus_loss = score(c)
        grid.append({"C": c, "accuracy": accuracy, "loss": -minus_loss})
        if best is not None and (accuracy, minus_loss) < best[0]:
            break
        if best is None or (accuracy, minus_loss) > best[0]:
            best = ((accuracy, minus_loss), c)
    return best[1]


def _cross_validate(x, labels, targets, weights, folds, seed, grid):
    """`_sweep` scored by the pooled out-of-fold accuracy (then log-loss) of `folds`
    stratified folds of the training pictures."""
    splits = _folds(labels, folds, seed)
    warm = [None] * len(splits)

    def score(c):
        probabilities = np.zeros(targets.shape)
        for i, (train, held) in enumerate(splits):
            w, b, _, _, warm[i] = solve(x[train], targets[train], c, weights[train], warm[i],
                                        SELECT_GTOL)
            probabilities[held] = scores(x[held], w, b)
        return _score(probabilities, labels)

    return _sweep(score, grid)
