"""`kapps review`: confident learning on out-of-fold probabilities finds the pictures whose
label is wrong, writes what it found, and `--drop_label_issues` retrains without them.

The method is tested on synthetic features (well-separated clusters, a few labels
flipped, and the same clusters with none flipped); the folder, the files and the
retrain on tiny solid-colour pictures through a SmallCNN base with random weights.
"""
import json
import os

import numpy as np
import pytest

import imagegen
from kapps.errors import UserError
from retrain.review import labels as review
from retrain.review.labels import (ReviewConfig, check_class_sizes, confident_joint,
                            confident_thresholds, find_label_issues, out_of_fold_probabilities)

SIZE = 32


def clusters(per_class=30, classes=4, seed=0):
    """Features of `classes` tight clusters far apart, `per_class` points each."""
    rng = np.random.default_rng(seed)
    centres = 10 * rng.normal(size=(classes, 8))
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(size=(len(labels), 8)), labels


def flipped(labels, count, seed=0):
    """`labels` with `count` of them moved to another class, and which."""
    rng = np.random.default_rng(seed)
    which = rng.choice(len(labels), count, replace=False)
    noisy = labels.copy()
    noisy[which] = (labels[which] + rng.integers(1, labels.max() + 1, count)) % (labels.max() + 1)
    return noisy, which


def test_thresholds_and_the_confident_joint_by_hand():
    labels = np.array([0, 0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    thresholds = confident_thresholds(labels, p)
    np.testing.assert_allclose(thresholds, [0.6, 0.8])  # (0.9+0.7+0.2)/3, (0.7+0.9)/2
    joint, likely = confident_joint(labels, p, thresholds)
    # Picture 2 is labelled 0 and confidently 1; picture 3 reaches no threshold.
    assert likely.tolist() == [0, 0, 1, -1, 1]
    assert joint.tolist() == [[2, 1], [0, 1]]


def test_flipped_labels_are_flagged_and_ranked_first():
    features, labels = clusters()
    noisy, which = flipped(labels, 5)
    p = out_of_fold_probabilities(features, noisy, 4, folds=5)
    for rank_by in review.RANK_BY:
        for filter_by in review.FILTER_BY:
            issues = find_label_issues(noisy, p, rank_by, filter_by)
            assert sorted(issues.ranked) == sorted(which), (rank_by, filter_by)
            assert (issues.likely[which] == labels[which]).all()  # their true class
    # The calibrated joint puts each flip in its (given, true) cell.
    estimated = find_label_issues(noisy, p).estimated
    expected = np.zeros((4, 4), int)
    np.add.at(expected, (noisy[which], labels[which]), 1)
    np.fill_diagonal(estimated, 0)
    assert (estimated == expected).all()


def test_with_no_label_flipped_nothing_is_flagged():
    features, labels = clusters()
    p = out_of_fold_probabilities(features, labels, 4, folds=5)
    assert len(find_label_issues(labels, p).ranked) == 0


def test_a_picture_on_the_border_is_ranked_after_a_flipped_one():
    features, labels = clusters(seed=1)
    noisy, which = flipped(labels, 3, seed=1)
    # A picture of class 0 moved half way to class 1: a hard picture, not a wrong label.
    border = np.flatnonzero(labels == 0)[0]
    features[border] = (features[labels == 0].mean(0) + features[labels == 1].mean(0)) / 2
    issues = find_label_issues(noisy, out_of_fold_probabilities(features, noisy, 4))
    assert sorted(issues.ranked[:3]) == sorted(which)


def test_out_of_fold_probabilities_never_come_from_a_fit_that_saw_the_picture(monkeypatch):
    features, labels = clusters(per_class=10, classes=3)
    features[:, 0] = np.arange(len(labels))  # each row names its picture
    calls = []
    real = review.fit_and_predict

    def spy(train_x, train_y, held_x, n_classes, l2):
        calls.append((set(train_x[:, 0].astype(int)), held_x[:, 0].astype(int)))
        return real(train_x, train_y, held_x, n_classes, l2)

    monkeypatch.setattr(review, "fit_and_predict", spy)
    p = out_of_fold_probabilities(features, labels, 3, folds=5)
    assert len(calls) == 5
    held = np.concatenate([h for _, h in calls])
    assert sorted(held) == list(range(len(labels)))  # each picture predicted once
    for seen, predicted in calls:
        assert seen.isdisjoint(predicted)
        assert len(seen) + len(predicted) == len(labels)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-9)


def test_a_class_smaller_than_the_folds_is_one_line_naming_it():
    check_class_sizes(np.array([0] * 5 + [1] * 5), ["cat", "dog"], 5)
    with pytest.raises(UserError, match=r"class 'dog' has 3 pictures, fewer than --folds 5: "
                                        r"add pictures to it, or pass --folds 3"):
        check_class_sizes(np.array([0] * 5 + [1] * 3), ["cat", "dog"], 5)


# ---- a folder: the files, the cache shared with retrain, --drop_label_issues ------------

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220)}
MISFILED = "green/red_in_green.png"  # a red picture in the green folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A SmallCNN trunk with random weights, as a weights file: a frozen base to review with."""
    import keras

    import kapps

    keras.utils.set_random_seed(3)
    path = tmp_path_factory.mktemp("weights") / "small_cnn.weights.h5"
    kapps.create_model("small_cnn", include_top=False, weights=None, pooling="avg",
                       input_shape=(SIZE, SIZE, 3)).save_weights(path)
    return str(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("review") / "pictures"
    for name, colour in COLOURS.items():
        for i in range(8):
            imagegen.write_image(root / name / f"{name}_{i}.png", colour, SIZE, noise=20, seed=i)
    imagegen.write_image(root / MISFILED, COLOURS["red"], SIZE, noise=20, seed=99)
    return root


def _settings(folder, weights, tmp):
    return dict(image_dir=str(folder), architecture="small_cnn", weights=weights,
                image_size=SIZE, bottleneck_dir=str(tmp / "cache"), output_dir=str(tmp / "out"))


@pytest.fixture(scope="module")
def reviewed(folder, weights, tmp_path_factory):
    from contextlib import redirect_stdout
    from io import StringIO

    tmp = tmp_path_factory.mktemp("reviewed")
    printed = StringIO()
    with redirect_stdout(printed):
        result = review.review_labels(folds=4, verbose=2, **_settings(folder, weights, tmp))
    return result, printed.getvalue(), tmp


def test_the_misfiled_picture_is_flagged_first_and_said_on_the_console(reviewed):
    result, printed, _ = reviewed
    worst = result.flagged[0]
    assert worst.rel_path == MISFILED
    assert result.classes[result.issues.likely[result.issues.ranked[0]]] == "red"
    assert len(result.flagged) <= 2  # the misfiled one, and at most one more
    assert "1. green/red_in_green.png  labelled green, likely red" in printed
    assert "To retrain without them: kapps retrain --image_dir" in printed


def test_the_files_hold_what_they_say(reviewed):
    from PIL import Image

    result, _, tmp = reviewed
    out = tmp / "out"
    written = json.loads((out / review.REVIEW_FILE).read_text())
    first = written["flagged"][0]
    assert {k: first[k] for k in ("rank", "path", "given_label", "likely_label")} == {
        "rank": 1, "path": MISFILED, "given_label": "green", "likely_label": "red"}
    assert 0 <= first["self_confidence"] < 0.5
    assert written["pictures"] == 25 and written["flagged_count"] == len(result.flagged)
    assert {"given_label": "green", "likely_label": "red"}.items() <= \
        written["label_errors"][0].items()
    joint = written["confident_joint"]
    assert joint["classes"] == ["blue", "green", "red"]
    assert np.sum(joint["calibrated"]) == 25
    assert written["settings"]["folds"] == 4 and written["settings"]["rank_by"] == "self_confidence"
    listed = [line for line in (out / review.LABEL_ISSUES_FILE).read_text().splitlines()
              if not line.startswith("#")]
    assert listed == [f["path"] for f in written["flagged"]]
    with Image.open(out / review.SHEET_FILE) as sheet:
        assert sheet.format == "PNG" and sheet.width > 400
    page = (out / "label_review.html").read_text(encoding="utf-8")
    assert page.count('<div class="card"') == len(written["flagged"])
    assert f'data-path="{MISFILED}"' in page
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no temporary left


def test_a_failed_write_leaves_the_earlier_sheet_whole(reviewed, monkeypatch):
    from matplotlib.figure import Figure

    result, _, tmp = reviewed
    out = tmp / "out"
    before = (out / review.SHEET_FILE).read_bytes()

    def broken_savefig(self, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half a picture")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        review.write_review(result, str(out))
    assert (out / review.SHEET_FILE).read_bytes() == before
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_drop_label_issues_leaves_out_those_in_training_and_keeps_every_split(reviewed, folder,
                                                                              weights, capsys):
    """Only training is cleaned: the listed validation and test pictures stay (leaving
    them out would raise the test accuracy by leaving out the hardest cases)."""
    from retrain.cli.retrain import parse_config
    from retrain.config import RetrainConfig, resolve
    from retrain.train.prepare import prepare_data

    result, _, tmp = reviewed
    settings = dict(_settings(folder, weights, tmp), verbose=2)
    # The flag alone reads label_issues.txt in --output_dir, where the review wrote it.
    assert parse_config(["--image_dir", "x", "--drop_label_issues"]).drop_label_issues is True
    dropped = prepare_data(resolve(RetrainConfig(drop_label_issues=True, **settings)))
    assert "Left out" in capsys.readouterr().out
    kept = prepare_data(resolve(RetrainConfig(**settings)))
    assert dropped.computed == kept.computed == 0  # the review filled the cache retrain reads
    before = {r.rel_path: r.split for r in kept.dataset.records}
    after = {r.rel_path: r.split for r in dropped.dataset.records}
    listed = {r.rel_path for r in result.flagged}
    gone = {path for path in listed if before[path] == "train"}
    assert MISFILED in listed and gone and set(before) - set(after) == gone
    assert after == {path: split for path, split in before.items() if path not in gone}


def test_a_list_of_every_training_picture_of_a_class_is_refused(reviewed, folder, weights,
                                                                 tmp_path):
    from retrain.config import RetrainConfig, resolve
    from retrain.train.prepare import prepare_data

    _, _, tmp = reviewed
    settings = _settings(folder, weights, tmp)
    kept = prepare_data(resolve(RetrainConfig(**settings)))
    blue = [r.rel_path for r in kept.dataset.records if r.label == "blue" and r.split == "train"]
    listed = tmp_path / "every_blue.txt"
    listed.write_text("\n".join(blue) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"{listed} lists every training picture of class "
                                        "'blue': without them the model cannot learn it"):
        prepare_data(resolve(RetrainConfig(drop_label_issues=str(listed), **settings)))


def test_a_review_with_a_filled_cache_computes_nothing(reviewed, folder, weights, capsys):
    _, _, tmp = reviewed
    again = review.review_labels(folds=4, verbose=2, rank_by="normalized_margin",
                                 **_settings(folder, weights, tmp))
    assert "Computing" not in capsys.readouterr().out
    assert again.flagged[0].rel_path == MISFILED


def test_a_second_review_keeps_the_list_the_user_edited(reviewed, folder, weights, capsys):
    _, _, tmp = reviewed
    listed = tmp / "out" / review.LABEL_ISSUES_FILE
    edited = "# kept the red one after all\n"
    listed.write_text(edited, encoding="utf-8")
    again = review.review_labels(folds=4, verbose=2, **_settings(folder, weights, tmp))
    kept = again.files["earlier_list"]
    assert open(kept, encoding="utf-8").read() == edited
    assert kept in capsys.readouterr().out
    assert MISFILED in listed.read_text(encoding="utf-8")


def test_more_folds_than_a_class_has_pictures_is_one_line(reviewed, folder, weights):
    _, _, tmp = reviewed
    with pytest.raises(UserError, match=r"class 'blue' has 8 pictures, fewer than --folds 9"):
        review.review_labels(folds=9, verbose=0, **_settings(folder, weights, tmp))


def test_the_rules_hold_for_python_callers_too():
    with pytest.raises(UserError, match=r"--folds must be at least 2. Received: 1"):
        ReviewConfig(image_dir="pets", folds=1).check()
    with pytest.raises(UserError, match=r"--weights none: a review needs"):
        ReviewConfig(image_dir="pets", weights="none").check()


def test_folds_fitted_side_by_side_give_the_probabilities_of_one_after_another(monkeypatch):
    """The review fits its folds in threads (one BLAS thread each): the same sums in the
    same order as one fold after another, so the very same probabilities."""
    from retrain.review import labels

    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 30)
    x = rng.normal(size=(120, 24)).astype(np.float32)
    x[np.arange(120), y] += 2.0
    monkeypatch.setattr(labels, "PARALLEL_FOLDS_MAX", 1)
    one_after_another = out_of_fold_probabilities(x, y, 4, folds=5)
    monkeypatch.setattr(labels, "PARALLEL_FOLDS_MAX", 5)
    side_by_side = out_of_fold_probabilities(x, y, 4, folds=5)
    assert np.array_equal(side_by_side, one_after_another)
    assert np.allclose(side_by_side.sum(axis=1), 1.0)
    assert np.mean(side_by_side.argmax(axis=1) == y) > 0.8  # each row from a real fit
