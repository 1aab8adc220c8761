"""The default head fit: L-BFGS to the optimum of the L2-regularised loss on cached features.

The solver must reach scikit-learn's own optimum of the same objective, and the Keras head
it is folded into must give scikit-learn's probabilities; a head given too few Adam steps
on the same features must not (the negative twin). End to end, a tiny folder picks its L2
strength by cross-validation and says so, a hidden layer runs Keras' fit and says why,
and the same seed gives the same weights.
"""
import json
from pathlib import Path

import imagegen
import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import kapps
from kapps.errors import UserError
from retrain import RetrainConfig, retrain
from retrain.train import linear
from retrain.config import resolve
from retrain.train.fit import train
from retrain.train.model import build_head
from retrain.train.prepare import PreparedData


def _features(n=150, dim=24, classes=3, seed=0):
    """Separable-ish features of very different scales (as ReLU6 features are)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, dim))
    x = (centres[labels] + rng.normal(scale=1.5, size=(n, dim))) * rng.uniform(0.01, 30, dim)
    return x.astype(np.float32), labels


def _loss(x, targets, kernel, bias, c):
    """scikit-learn's objective (with soft targets) on scaled features `x`."""
    return linear.objective(np.concatenate([kernel.ravel(), bias]), x, targets,
                            np.ones(len(x)), c)[0]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_the_fit_reaches_scikit_learns_optimum_and_the_keras_head_gives_its_probabilities(
        label_smoothing):
    """scikit-learn has no label smoothing, but a picture whose label is smoothed is the
    same loss as one copy per class weighted by its smoothed target: its optimum on those
    copies is the optimum of the smoothed loss."""
    x, y = _features()
    c, k = 0.1, 3
    fit = linear.fit_linear_head(x, y, k, l2=1 / c, label_smoothing=label_smoothing)
    scale = linear.Scaler.fit(x)
    targets = linear.smoothed(y, k, label_smoothing)
    copies = np.repeat(scale(x), k, axis=0)
    reference = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(
        copies, np.tile(np.arange(k), len(x)), sample_weight=targets.ravel())
    # Our solution, read back on scaled features, against scikit-learn's.
    ours_w = fit.kernel.astype(np.float64) * scale.scale
    ours_b = fit.bias + scale.mean @ fit.kernel.astype(np.float64)
    best = _loss(scale(x), targets, reference.coef_.T, reference.intercept_, c)
    assert fit.converged and fit.chosen_by == "--l2"
    assert abs(_loss(scale(x), targets, ours_w, ours_b, c) - best) < 1e-6 * best

    head = build_head(x.shape[1], k, dropout=0.2)
    (dense,) = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    dense.set_weights([fit.kernel, fit.bias])
    np.testing.assert_allclose(np.asarray(head(x, training=False)),
                               reference.predict_proba(scale(x)), atol=1e-5)


class _Folder:
    classes = ["a", "b", "c"]


def _prepared(config, x, y):
    """Cached features of a folder that was never scanned (as bench/bench_head_fit.py)."""
    prepared = PreparedData(config, _Folder(), None)
    half = len(y) * 2 // 3
    for split, rows in (("train", slice(0, half)), ("validation", slice(half, None)),
                        ("test", slice(half, None))):
        prepared.features[split] = x[rows, None, :]
        prepared.labels[split] = y[rows].astype(np.int32)
    return prepared


def test_a_few_adam_steps_do_not_reach_the_optimum_that_lbfgs_reaches():
    x, y = _features()
    common = dict(image_dir="features", verbose=0, class_weights=False)
    scores = {}
    for fit, l2 in (("lbfgs", 10.0), ("keras", None)):  # Keras' fit takes no --l2
        config = RetrainConfig(head_fit=fit, epochs=1, learning_rate=1e-3, l2=l2, **common)
        prepared = _prepared(config, x, y)
        model = build_head(x.shape[1], 3)
        history = train(model, prepared, config)
        assert history.head_fit["method"] == fit
        (dense,) = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        kernel, bias = dense.get_weights()
        train_x = prepared.features["train"][:, 0]
        scale = linear.Scaler.fit(train_x)
        scores[fit] = _loss(scale(train_x), linear.smoothed(prepared.labels["train"], 3, 0.1),
                            kernel * scale.scale, bias + scale.mean @ kernel, 0.1)
    assert scores["keras"] > scores["lbfgs"] + 0.05


def test_the_same_seed_gives_the_same_weights_and_c_is_chosen_on_validation():
    x, y = _features(seed=1)
    fits = [linear.fit_linear_head(x[:100], y[:100], 3, x[100:], y[100:]) for _ in range(2)]
    np.testing.assert_array_equal(fits[0].kernel, fits[1].kernel)
    np.testing.assert_array_equal(fits[0].bias, fits[1].bias)
    assert fits[0].chosen_by == "validation" and fits[0].held_out == 50
    # The sweep, strong to weak, stops at the first C that scores below the best so far.
    grid = fits[0].grid
    assert [row["C"] for row in grid] == list(linear.C_GRID[:len(grid)])
    ranks = [(row["accuracy"], -row["loss"]) for row in grid]
    assert len(grid) == len(linear.C_GRID) or ranks[-1] < max(ranks[:-1])
    assert all(ranks[i] >= max(ranks[:i]) for i in range(1, len(ranks) - 1))
    assert fits[0].c == grid[ranks.index(max(ranks))]["C"]


def test_cross_validation_chooses_c_on_a_bounded_draw_of_the_training_pictures(monkeypatch):
    """Without validation pictures, C is chosen by cross-validation on at most SWEEP_MAX
    training pictures (a stratified draw with the seed), and the fit kept uses them all."""
    x, y = _features(n=150, seed=2)
    whole = linear.fit_linear_head(x, y, 3, seed=3)
    monkeypatch.setattr(linear, "SWEEP_MAX", 60)
    drawn = [linear.fit_linear_head(x, y, 3, seed=3) for _ in range(2)]
    assert whole.chosen_by == drawn[0].chosen_by == "cross-validation"
    assert whole.held_out == 150 and drawn[0].held_out == 60
    np.testing.assert_array_equal(drawn[0].kernel, drawn[1].kernel)  # the draw follows the seed
    assert drawn[0].c in linear.C_GRID


def test_which_fit_runs_follows_the_flags():
    def fit(**fields):
        return linear.chosen_head_fit(RetrainConfig(image_dir="x", **fields))

    assert fit() == "lbfgs"
    assert fit(learning_rate=0.01) == fit(optimizer="sgd") == fit(hidden_units=8) == "keras"
    assert fit(epochs=4) == fit(early_stopping=3) == fit(how_many_training_steps=9) == "keras"
    assert fit(random_crop=10) == fit(fine_tune="top:1") == fit(head_fit="keras") == "keras"
    assert fit(head_fit="lbfgs", learning_rate=0.01) == "lbfgs"
    with pytest.raises(UserError, match="--head_fit lbfgs .* a hidden layer"):
        fit(head_fit="lbfgs", hidden_units=8)
    with pytest.raises(UserError, match="--head_fit must be one of auto, lbfgs, keras"):
        fit(head_fit="newton")
    with pytest.raises(UserError, match="--l2 must be more than 0"):
        fit(l2=0.0)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("linear")
    weights = root / "lenet5.weights.h5"
    keras.utils.set_random_seed(2)
    kapps.create_model("lenet5", include_top=False, input_shape=(32, 32, 3)).save_weights(weights)
    return root, str(weights)


def _run(lenet, name, counts, capsys=None, **overrides):
    root, weights = lenet
    pictures = imagegen.make_class_folder(root / f"pictures_{name}", counts, noise=60)
    config = RetrainConfig(image_dir=str(pictures), architecture="lenet5", weights=weights,
                           image_size=32, verbose=1, output_dir=str(root / name),
                           bottleneck_dir=str(root / "cache"), **overrides)
    result = retrain(config)
    metrics = json.loads((Path(result.output_dir) / "metrics.json").read_text("utf-8"))
    return result, metrics


def test_a_tiny_folder_chooses_c_by_cross_validation_and_says_so(lenet, capsys):
    _, metrics = _run(lenet, "tiny", {"a": 5, "b": 5, "c": 5})
    head_fit = metrics["head_fit"]
    assert head_fit["method"] == "lbfgs" and head_fit["chosen_by"] == "cross-validation"
    assert head_fit["folds"] >= 2 and len(head_fit["grid"]) >= 2
    assert metrics["config"]["head_fit"] == "lbfgs" and metrics["epochs_run"] == 1
    printed = capsys.readouterr().out
    assert "fold cross-validation on" in printed and head_fit["summary"] in printed


def test_a_hidden_layer_runs_keras_fit_and_says_why(lenet, capsys):
    _, metrics = _run(lenet, "hidden", {"a": 8, "b": 8}, hidden_units=8, epochs=2)
    assert metrics["head_fit"]["method"] == "keras" and metrics["epochs_run"] == 2
    assert metrics["head_fit"]["reason"] == "a hidden layer makes the loss non-convex"
    assert "Head fit: Keras' fit, adam at 0.001 (a hidden layer" in capsys.readouterr().out


def test_a_search_over_l2_fits_each_trial_by_lbfgs_and_exports_the_best(lenet, tmp_path):
    import keras_tuner

    import tuning
    from tuning import RetrainHyperModel, SearchSpace

    root, weights = lenet
    pictures = imagegen.make_class_folder(root / "pictures_search",
                                          {"a": 12, "b": 12, "c": 12}, noise=60)
    common = dict(architecture="lenet5", weights=weights, image_size=32, verbose=0,
                  validation_percentage=25, testing_percentage=20,
                  bottleneck_dir=str(root / "cache"), output_dir=str(tmp_path / "unused"))
    _, rows = tuning.search(pictures, "grid", {"l2": [0.1, 1000.0]}, directory=str(tmp_path),
                            project_name="l2", trials_per_process=0, fit_verbose=0,
                            export_best=str(tmp_path / "best"), **common)
    assert sorted(row["l2"] for row in rows) == [0.1, 1000.0]
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text("utf-8"))
    best = max(rows, key=lambda row: row["score"])
    assert metrics["head_fit"]["method"] == "lbfgs" and metrics["head_fit"]["chosen_by"] == "--l2"
    assert metrics["head_fit"]["l2"] == best["l2"]

    # A space that varies a setting only Keras' fit uses fits its heads with Keras' fit.
    config = RetrainConfig(image_dir=pictures, **common)
    for space, fit in (({"dropout": [0.0, 0.5]}, "keras"), ({"l2": [1.0, 10.0]}, "lbfgs")):
        model = RetrainHyperModel(config, SearchSpace.from_dict(space))
        assert model.trial_config(keras_tuner.HyperParameters()).head_fit == fit

    # l2 belongs to the L-BFGS fit: a trial with a hidden layer has none, and a space in
    # which every trial fits by Keras is refused before any work.
    model = RetrainHyperModel(config, SearchSpace.from_dict({"l2": [1.0],
                                                             "hidden_layer": [True]}))
    trial = model.trial_config(keras_tuner.HyperParameters())
    assert trial.hidden_units and trial.l2 is None and trial.head_fit == "keras"
    with pytest.raises(UserError, match="search space: l2 sets the L-BFGS head fit"):
        tuning.search(pictures, "grid", {"l2": [1.0], "dropout": [0.0, 0.5]},
                      directory=str(tmp_path), project_name="mixed", **common)
    assert not (tmp_path / "mixed").exists()
