"""Finding the pictures whose labels are probably wrong: confident learning on the frozen
base's cached features (Northcutt, Jiang and Chuang, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 2021).

Every picture gets predicted probabilities from a head that never saw it: k-fold fits of
the L-BFGS logistic regression `kapps retrain` fits (`retrain.train.linear.fit_linear_head`),
on the same features and cache as `kapps retrain`, so a retrain after a review computes
nothing again. Then, as in the paper and in cleanlab's
`find_label_issues` (its reference implementation):

1. each class j gets a threshold t_j, the mean probability of j over the pictures
   labelled j (their mean self-confidence);
2. the confident joint C[i, j] counts the pictures labelled i whose probability of some
   class reaches that class's threshold, under the most probable such class j; it is
   calibrated so that row i sums to the pictures labelled i, and its off-diagonal
   entries are the estimated label errors of each (given, true) pair;
3. prune by noise rate: for each pair i != j, the C[i, j] pictures labelled i with the
   largest margin p_j - p_i are flagged; and by default (cleanlab's `filter_by="both"`)
   only those that pruning by class flags too: the sum over j != i of C[i, j] pictures
   labelled i with the lowest p_i. A picture whose most probable class is its given one
   is never flagged;
4. the flagged pictures are ranked by self-confidence (the probability of the given
   label) or by normalised margin, worst first.

`review_labels(config)` runs it on a folder and writes `label_review.json`,
`label_review.png`, `label_review.html` (a page to go through the flagged pictures and
choose, for `kapps review --apply`: `retrain.review.relabel`) and `label_issues.txt` (what
`kapps retrain --drop_label_issues` leaves out).
"""
import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from kapps.errors import UserError
from retrain.common import atomic
from retrain.common.files import LABEL_ISSUES_FILE
from retrain.config import RetrainConfig, _flag, default_output_dir, flag_help

REVIEW_FILE = "label_review.json"
SHEET_FILE = "label_review.png"
RANK_BY = ("self_confidence", "normalized_margin")
# Which pictures confident learning flags. On the digits' MobileNetV2 features with 3% and
# 10% of labels flipped, "both" had higher precision than "prune_by_noise_rate" (cleanlab's
# default) for a few points of recall, and the higher F1 (docs/BENCHMARKS.md).
FILTER_BY = ("both", "prune_by_noise_rate")
# Flagged pictures printed one a line; the rest are in the files.
CONSOLE_LINES = 10
# Probabilities this close count as equal (cleanlab's tolerance): a picture whose given
# label ties with the most probable one is not flagged.
TIE = 1e-6
# Flags that pick the base and its cache, shared with `kapps retrain` (same meaning, same
# defaults), so a review and a retrain of one folder read the same cached features.
BASE_FLAGS = ("architecture", "weights", "model_dir", "base_layer", "image_size",
              "bottleneck_dir", "runtime")


def _shared(name):
    """A `ReviewConfig` field that is the `RetrainConfig` field `name`."""
    return _flag(next(f.default for f in dataclasses.fields(RetrainConfig) if f.name == name),
                 flag_help(name))


@dataclass
class ReviewConfig:
    """Settings of one review. `None` means the default `kapps retrain` would pick."""

    image_dir: Optional[str] = _shared("image_dir")
    architecture: str = _shared("architecture")
    weights: Optional[str] = _shared("weights")
    model_dir: Optional[str] = _shared("model_dir")
    base_layer: Optional[str] = _shared("base_layer")
    image_size: Optional[int] = _shared("image_size")
    bottleneck_dir: Optional[str] = _shared("bottleneck_dir")
    runtime: str = _shared("runtime")
    output_dir: Optional[str] = _flag(
        None,
        f"where {REVIEW_FILE}, {SHEET_FILE}, label_review.html and {LABEL_ISSUES_FILE} go, "
        "and --apply's label_moves.jsonl (default: "
        "saved_models/<name of image_dir>, the folder `kapps retrain` exports to and where "
        "its --drop_label_issues reads)")
    folds: int = _flag(5, "folds of the out-of-fold probabilities: each picture's come from "
                          "a head fitted on the other folds")
    rank_by: str = _flag("self_confidence",
                         "how flagged pictures are ranked, worst first: self_confidence (the "
                         "probability of the given label) or normalized_margin (it less the "
                         "most probable other label's)")
    filter_by: str = _flag("both", "which pictures are flagged: prune_by_noise_rate (for each "
                                   "pair of given and likely label, as many as the confident "
                                   "joint estimates, by margin) or both (only those that "
                                   "pruning by class, the lowest probabilities of the given "
                                   "label, flags too)")
    l2: float = _flag(100.0, "L2 strength of each fold's head (retrain's --l2: 1/C of a "
                            "logistic regression on the scaled features); stronger than "
                            "retrain's choice, for probabilities that are not over-confident")
    seed: int = _flag(0, "seed of the folds")
    verbose: Optional[int] = _flag(None, "0 quiet, 1 progress bars, 2 one line per step "
                                         "(default: bars on a terminal)")

    def retrain_config(self):
        """The `RetrainConfig` of a retrain on the same base and cache (a frozen base)."""
        return RetrainConfig(image_dir=self.image_dir, output_dir=self.output_dir,
                             seed=self.seed, verbose=self.verbose,
                             **{name: getattr(self, name) for name in BASE_FLAGS})

    def check(self):
        """`UserError` for the first value no review accepts, naming its flag; imports no
        TensorFlow, so a mistake answers before any work."""
        from retrain.config import start_from

        _check(self.image_dir, "No image folder given: pass --image_dir FOLDER (one sub-folder "
                               "of pictures per class).")
        base = self.retrain_config()
        base.check()
        if start_from(base)[1] != "none":
            raise UserError(f"--weights {start_from(base)[0]}: a review needs a pretrained "
                            "base's features (a base from scratch has none to review with); "
                            "pass --weights imagenet, a weights file or a saved .keras "
                            "classifier.")
        _check(not isinstance(self.folds, bool) and int(self.folds) == self.folds
               and self.folds >= 2, f"--folds must be at least 2. Received: {self.folds}")
        _check(self.rank_by in RANK_BY,
               f"--rank_by must be one of {', '.join(RANK_BY)}. Received: {self.rank_by!r}")
        _check(self.filter_by in FILTER_BY, f"--filter_by must be one of "
               f"{', '.join(FILTER_BY)}. Received: {self.filter_by!r}")
        _check(0 < self.l2 < float("inf"), f"--l2 must be more than 0. Received: {self.l2}")

    def out_dir(self):
        return self.output_dir or default_output_dir(self.image_dir)


def _check(condition, message):
    if not condition:
        raise UserError(message)


def check_class_sizes(labels, classes, folds):
    """`UserError` naming the first class with fewer pictures than `folds`: each fold must
    hold out one of its pictures and train on another."""
    counts = np.bincount(labels, minlength=len(classes))
    for name, count in zip(classes, counts):
        if count < folds:
            raise UserError(f"class {name!r} has {count} picture{'s' if count != 1 else ''}, "
                            f"fewer than --folds {folds}: add pictures to it, or pass "
                            f"--folds {max(2, int(count))}" + (" (at least 2)" if count < 2
                                                                else ""))


def fit_and_predict(train_x, train_y, held_x, n_classes, l2):
    """Probabilities of `held_x` from the head `kapps retrain` fits on a frozen base
    (`retrain.train.linear.fit_linear_head`, at L2 strength `l2`), fitted on (`train_x`,
    `train_y`) alone (every class present there)."""
    from scipy.special import softmax

    from retrain.train.linear import fit_linear_head

    fit = fit_linear_head(train_x, train_y, n_classes, l2=l2)
    return softmax(np.asarray(held_x, np.float64) @ fit.kernel + fit.bias, axis=1)


# Folds fitted at once: each fit is one BLAS thread, so the cores share the folds; each
# holds a copy of its training features, so big folders fit one fold at a time.
PARALLEL_FOLDS_MAX = 4
PARALLEL_FEATURES_MAX_BYTES = 1 << 30


def out_of_fold_probabilities(features, labels, n_classes, folds=5, l2=100.0, seed=0):
    """(N, n_classes) probabilities, each row from a fit on the other folds only
    (stratified folds drawn with `seed`; every class needs `folds` pictures).

    The folds are fitted side by side in threads (NumPy and BLAS let go of the GIL),
    one BLAS thread each as every head fit runs: each fit's sums run in the same order
    as alone, so the probabilities are the same as one fold after another.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    features, labels = np.asarray(features), np.asarray(labels)
    probabilities = np.zeros((len(labels), n_classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels))
    side_by_side = 1 if features.nbytes > PARALLEL_FEATURES_MAX_BYTES else \
        min(len(splits), os.cpu_count() or 1, PARALLEL_FOLDS_MAX)

    def fold(split):
        train, held = split
        return fit_and_predict(features[train], labels[train], features[held], n_classes, l2)

    # One limit around all the threads: a fit's own limit, left while another fit runs,
    # restores this one (1), not the process's.
    with threadpool_limits(1), ThreadPoolExecutor(side_by_side) as pool:
        for (_, held), fitted in zip(splits, pool.map(fold, splits)):
            probabilities[held] = fitted
    return probabilities


def confident_thresholds(labels, probabilities):
    """Per class, the mean probability of that class over the pictures labelled with it."""
    return np.array([probabilities[labels == k, k].mean() for k in range(probabilities.shape[1])])


def confident_joint(labels, probabilities, thresholds):
    """(joint, likely): `joint[i, j]` counts the pictures labelled i whose most probable
    class among those at or above their threshold is j; `likely` is that class per
    picture (-1 where no class reaches its threshold)."""
    n_classes = probabilities.shape[1]
    above = probabilities >= thresholds - TIE
    likely = np.where(above.any(axis=1), np.where(above, probabilities, -1).argmax(axis=1), -1)
    joint = np.zeros((n_classes, n_classes), int)
    confident = likely >= 0
    np.add.at(joint, (labels[confident], likely[confident]), 1)
    return joint, likely


def _round_rows(matrix):
    """Whole numbers, each row keeping its (rounded) total: the largest remainders round up."""
    floor = np.floor(matrix).astype(int)
    short = np.rint(matrix.sum(axis=1)).astype(int) - floor.sum(axis=1)
    order = np.argsort(-(matrix - floor), axis=1, kind="stable")
    for row, n in enumerate(short):
        floor[row, order[row, :n]] += 1
    return floor


def calibrate(joint, labels):
    """The confident joint scaled so that row i sums to the pictures labelled i (the paper's
    calibration): estimated counts of (given, true) label pairs."""
    counts = np.bincount(labels, minlength=len(joint))
    joint = joint.astype(float)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))  # a class none confidently hold
    return _round_rows(joint / joint.sum(axis=1, keepdims=True) * counts[:, None])


def quality(labels, probabilities, rank_by="self_confidence"):
    """Per picture, how likely its label is right (low: probably wrong): the probability of
    the given label, or the normalised margin (it less the most probable other, +1, /2)."""
    given = probabilities[np.arange(len(labels)), labels]
    if rank_by == "self_confidence":
        return given
    others = probabilities.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return (given - others.max(axis=1) + 1) / 2


@dataclass
class LabelIssues:
    """What confident learning found in (labels, out-of-fold probabilities)."""
    ranked: np.ndarray       # indices of the flagged pictures, worst first
    likely: np.ndarray       # per picture, its most probable class
    quality: np.ndarray      # per picture, the ranking score (low: probably wrong)
    thresholds: np.ndarray   # per class
    joint: np.ndarray        # the confident joint, rows given label, columns likely true label
    estimated: np.ndarray    # the calibrated joint: estimated pictures per (given, true) pair


def find_label_issues(labels, probabilities, rank_by="self_confidence", filter_by="both"):
    """The pictures confident learning flags, from out-of-fold `probabilities` (N, K) of
    pictures labelled `labels` (N,); a `LabelIssues`."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, float)
    n_classes = probabilities.shape[1]
    thresholds = confident_thresholds(labels, probabilities)
    joint, _ = confident_joint(labels, probabilities, thresholds)
    estimated = calibrate(joint, labels)
    flagged = np.zeros(len(labels), bool)
    for given in range(n_classes):
        mine = np.flatnonzero(labels == given)
        for true in range(n_classes):
            if true != given and estimated[given, true] > 0:
                margin = probabilities[mine, true] - probabilities[mine, given]
                flagged[mine[np.argsort(-margin, kind="stable")[:estimated[given, true]]]] = True
    if filter_by == "both":
        by_class = np.zeros(len(labels), bool)
        for given in range(n_classes):
            mine = np.flatnonzero(labels == given)
            wrong = estimated[given].sum() - estimated[given, given]
            by_class[mine[np.argsort(probabilities[mine, given], kind="stable")[:wrong]]] = True
        flagged &= by_class
    given_p = probabilities[np.arange(len(labels)), labels]
    flagged &= given_p + TIE < probabilities.max(axis=1)
    scores = quality(labels, probabilities, rank_by)
    index = np.flatnonzero(flagged)
    ranked = index[np.argsort(scores[index], kind="stable")]
    return LabelIssues(ranked, probabilities.argmax(axis=1), scores, thresholds, joint,
                       estimated)


# The contact sheet shows this many flagged pictures, worst first; all are in the JSON.
SHEET_MAX = 96


@dataclass
class LabelReview:
    """A review of a folder: its pictures, their out-of-fold probabilities, what was
    flagged (`issues.ranked`), and the files written."""
    image_dir: str
    classes: list
    records: list            # retrain.data.dataset.ImageRecord of every picture reviewed
    labels: np.ndarray
    probabilities: np.ndarray
    issues: LabelIssues
    settings: dict
    files: dict              # {"json", "png", "html", "list"}: paths written
    seconds: dict

    @property
    def flagged(self):
        """The records of the flagged pictures, worst first."""
        return [self.records[i] for i in self.issues.ranked]

    def to_dict(self):
        classes, issues, p = self.classes, self.issues, self.probabilities
        flagged = [{"rank": rank, "path": self.records[i].rel_path,
                    "given_label": classes[self.labels[i]],
                    "likely_label": classes[issues.likely[i]],
                    "self_confidence": round(float(p[i, self.labels[i]]), 6),
                    "likely_probability": round(float(p[i, issues.likely[i]]), 6),
                    "score": round(float(issues.quality[i]), 6),
                    "split": self.records[i].split}
                   for rank, i in enumerate(issues.ranked, 1)]
        pairs = []
        for given, true in zip(*np.nonzero(issues.estimated)):
            if given != true:
                pairs.append({"given_label": classes[given], "likely_label": classes[true],
                              "estimated_errors": int(issues.estimated[given, true]),
                              "flagged": sum(1 for f in flagged if f["given_label"] ==
                                             classes[given] and f["likely_label"] == classes[true])})
        pairs.sort(key=lambda pair: -pair["estimated_errors"])
        return {
            "image_dir": self.image_dir, "pictures": len(self.records),
            "flagged_count": len(flagged),
            "estimated_errors": int(issues.estimated.sum() - np.trace(issues.estimated)),
            "out_of_fold_accuracy": round(float(np.mean(p.argmax(axis=1) == self.labels)), 6),
            "flagged": flagged,
            "label_errors": pairs,
            "confident_joint": {
                "classes": classes, "rows": "given label", "columns": "likely true label",
                "counts": issues.joint.tolist(), "calibrated": issues.estimated.tolist()},
            "thresholds": {name: round(float(t), 6) for name, t in zip(classes, issues.thresholds)},
            "settings": self.settings, "seconds": self.seconds,
        }


def review_labels(config=None, **kwargs):
    """Review the labels of `config.image_dir`; returns a `LabelReview`.

    Pass a `ReviewConfig`, or its fields as keyword arguments:
    `review_labels(image_dir="pets", folds=5)`. Fills the bottleneck cache `kapps retrain`
    reads (nothing is computed again where it is filled), then writes `label_review.json`,
    `label_review.png`, `label_review.html` and `label_issues.txt` to `config.output_dir`
    and prints a line per flagged picture (the first `CONSOLE_LINES`).
    """
    from kapps.process import start_devices
    from retrain.data import decode_ahead
    from retrain.config import resolve, weights_note
    from retrain.train.prepare import prepare_data

    config = dataclasses.replace(config or ReviewConfig(), **kwargs)
    config.check()
    requested = config.retrain_config()
    base = resolve(requested)
    note = weights_note(requested, base)
    if note and base.verbose:
        print(note)
    start_devices()
    started = time.perf_counter()
    prepared = prepare_data(base)
    decode_ahead.stop()
    prepared_s = time.perf_counter() - started
    splits = ("train", "validation", "test")
    records = [r for split in splits for r in prepared.records(split)]
    features = np.concatenate([prepared.features[split][:, 0] for split in splits])
    labels = np.concatenate([prepared.labels[split] for split in splits]).astype(int)
    check_class_sizes(labels, prepared.classes, config.folds)
    started = time.perf_counter()
    probabilities = out_of_fold_probabilities(features, labels, len(prepared.classes),
                                              config.folds, config.l2, config.seed)
    issues = find_label_issues(labels, probabilities, config.rank_by, config.filter_by)
    settings = {"folds": config.folds, "l2": config.l2, "filter_by": config.filter_by,
                "rank_by": config.rank_by, "seed": config.seed,
                "architecture": base.architecture, "weights": base.weights,
                "image_size": prepared.base.image_size, "base_layer": base.base_layer,
                "method": "confident learning (Northcutt et al., JAIR 2021) on out-of-fold "
                          "probabilities of a logistic regression on the frozen base's "
                          "standardised features"}
    review = LabelReview(prepared.dataset.image_dir, list(prepared.classes), records, labels,
                         probabilities, issues, settings, {},
                         {"features": round(prepared_s, 3),
                          "review": round(time.perf_counter() - started, 3)})
    write_review(review, base.output_dir)
    if base.verbose:
        for line in review_lines(review, config.output_dir is None):
            print(line)
    return review


def write_review(review, out_dir):
    """Write the review's JSON, contact sheet, page and list of paths to `out_dir`, each
    atomically; fills `review.files`."""
    from retrain.report.figures import save_contact_sheet
    from retrain.review.relabel import PAGE_FILE, _keep_earlier_list, write_review_page

    files = {"json": os.path.join(out_dir, REVIEW_FILE), "png": os.path.join(out_dir, SHEET_FILE),
             "html": os.path.join(out_dir, PAGE_FILE),
             "list": os.path.join(out_dir, LABEL_ISSUES_FILE)}
    written = review.to_dict()
    atomic.write_json(files["json"], written)
    write_review_page(written, files["html"])
    shown = review.issues.ranked[:SHEET_MAX]
    captions = [f"{rank}. given {review.classes[review.labels[i]]}\n"
                f"likely {review.classes[review.issues.likely[i]]}\n"
                f"self-confidence {review.probabilities[i, review.labels[i]]:.3f}"
                for rank, i in enumerate(shown, 1)]
    count = len(review.issues.ranked)
    title = (f"{count} pictures whose label is probably wrong, worst first"
             + (f" (the first {SHEET_MAX}; all in {REVIEW_FILE})" if count > SHEET_MAX else "")
             if count else "No picture's label looks wrong")
    save_contact_sheet([review.records[i].path for i in shown], captions, files["png"], title)
    lines = [f"# Pictures of {review.image_dir} whose label kapps review found probably wrong, "
             "worst first: one a line, relative to the image folder.",
             "# kapps retrain --drop_label_issues leaves them out; delete a line to keep that "
             "picture."] + [review.records[i].rel_path for i in review.issues.ranked]
    text = "\n".join(lines) + "\n"
    earlier = _keep_earlier_list(files["list"], text)  # the user may have edited it
    atomic.write_text(files["list"], text)
    if earlier:
        files["earlier_list"] = earlier
    review.files = files
    return files


def review_lines(review, default_folder=True):
    """What a review says on the console: a line per flagged picture (the first
    `CONSOLE_LINES`), where the rest are, and how to retrain without them."""
    count, issues = len(review.issues.ranked), review.issues
    accuracy = np.mean(review.probabilities.argmax(axis=1) == review.labels)
    lines = [f"{count} of {len(review.records)} pictures have a label that is probably wrong "
             f"({review.settings['folds']}-fold out-of-fold accuracy {100 * accuracy:.1f}%)"
             + (":" if count else ".")]
    width = max((len(review.records[i].rel_path) for i in issues.ranked[:CONSOLE_LINES]),
                default=0)
    for rank, i in enumerate(issues.ranked[:CONSOLE_LINES], 1):
        lines.append(f"  {rank:>3}. {review.records[i].rel_path:<{width}}  labelled "
                     f"{review.classes[review.labels[i]]}, likely "
                     f"{review.classes[issues.likely[i]]} (self-confidence "
                     f"{review.probabilities[i, review.labels[i]]:.3f})")
    files = review.files
    if count > CONSOLE_LINES:
        lines.append(f"  ... and {count - CONSOLE_LINES} more: all of them in {files['json']} "
                     f"and {files['list']}, the worst {min(count, SHEET_MAX)} pictured in "
                     f"{files['png']}")
    else:
        lines.append(f"Wrote {files['json']}, {files['png']}, {files['html']} and "
                     f"{files['list']}.")
    if files.get("earlier_list"):
        lines.append(f"The list that was there (perhaps edited) is kept as "
                     f"{files['earlier_list']}.")
    if count:
        flag = "--drop_label_issues" + ("" if default_folder else f" {files['list']}")
        lines.append(f"To retrain without them: kapps retrain --image_dir {review.image_dir} "
                     f"{flag} (delete a line of {os.path.basename(files['list'])} to keep "
                     "that picture)")
        lines.append(f"To go through them and move some: open {files['html']}, download the "
                     f"decisions, then kapps review --apply label_decisions.json --image_dir "
                     f"{review.image_dir}")
    return lines
