"""From a resolved config to data ready for training: scan, split, base, cached features.

`prepare_data` is the expensive, reusable step: the tuner calls it once and trains
many heads on what it returns.
"""
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from kapps.errors import UserError

from retrain.common import atomic
from retrain.train import bottlenecks, feature_shares, multi_worker
from retrain.data.dataset import broken_lines, check_image_folder, scan_image_folder
from retrain.data.images import file_digest
from retrain.data.inputs import broken_since_scan, forget_broken, mark_broken
from retrain.train.model import Base, build_base
from retrain.data.split import check_percentages
from retrain.common.timing import StepTimes


@dataclass
class PreparedData:
    """The dataset, the base, and (for a frozen base) cached features per split.

    `features[split]` has shape (N, V, D): V cached variants per picture (the plain
    picture first, then distorted copies used only for training). `timings` holds the
    seconds each preparation step took (scan, base, bottlenecks).
    """
    config: object
    dataset: object
    base: Base
    features: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    computed: int = 0
    weights_digest: str = None
    timings: StepTimes = field(default_factory=StepTimes)
    # The bottleneck cache's folder for this base (a frozen base only): where a base
    # conversion the feature pass made is kept.
    cache_folder: str = None
    _tensors: dict = field(default_factory=dict)

    @property
    def classes(self):
        return self.dataset.classes

    @property
    def head_only(self):
        return self.config.fine_tune_layers() is None

    def records(self, split):
        """Records of `split`; "train" includes validation when training on both."""
        records = self.dataset.split(split)
        if split == "train" and self.config.train_on_validation:
            records = records + self.dataset.split("validation")
        return records

    def leave_out_broken(self):
        """Drop the pictures that broke after the scan from the dataset and the labels
        (features already leave them out); returns {path: reason} of those dropped."""
        broken = broken_since_scan(self.dataset.records)
        if broken:
            self.dataset.leave_out(broken)
            self._set_labels()
        return broken

    def _set_labels(self):
        for split in ("train", "validation", "test"):
            self.labels[split] = np.array([r.class_index for r in self.records(split)],
                                          np.int32)
        self._tensors.clear()

    def tensors(self, split):
        """(features, one-hot labels) of `split` as tensors, made once and shared by trials."""
        if split not in self._tensors:
            import keras
            import tensorflow as tf

            onehot = keras.utils.to_categorical(self.labels[split], len(self.classes))
            self._tensors[split] = (tf.constant(self.features[split]),
                                    tf.constant(onehot.astype("float32")))
        return self._tensors[split]

    def fresh_base(self):
        """A newly built base, for a model whose base layers will be trained: `base`
        itself stays as prepared (features, and the exported classifier of a frozen base)."""
        return build_base(self.config, self.weights_digest)


BROKEN_FILE = "broken.json"  # in the bottleneck cache: {sha1 of a file: why it cannot be read}


def read_broken(cache_dir):
    """The pictures an earlier run found broken in its feature pass, by content digest, so
    a later run reports them without decoding them again (a truncated JPEG stays so)."""
    try:
        with open(os.path.join(cache_dir, BROKEN_FILE), encoding="utf-8") as f:
            known = json.load(f)
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


# Reasons that the bytes alone decide (`retrain.data.images`): remembered by digest. Another
# failure (a read error on a network drive, a file moved during the run) may not happen
# again, so those pictures are decoded again next time.
CONTENT_REASONS = ("the file is empty", "not a ", "the file is truncated or damaged")


def remember_broken(cache_dir, known, found):
    """Add `found` ({digest: reason}) to the cache's broken pictures, those whose reason
    their bytes decide (`CONTENT_REASONS`) only."""
    found = {digest: reason for digest, reason in found.items()
             if str(reason).startswith(CONTENT_REASONS)}
    if found and not found.items() <= known.items():
        atomic.write_json(os.path.join(cache_dir, BROKEN_FILE), {**known, **found})


def drop_label_issues(dataset, path, verbose):
    """`dataset` without the training pictures listed in `path` (`--drop_label_issues`),
    said on one line with those listed that stay (validation and test) and those not in
    the folder (moved or renamed since the review).

    Only training is cleaned: the listed pictures are the ones a model disagreed with,
    so leaving them out of the test pictures too would raise the test accuracy by
    leaving out its hardest cases; validation and test keep the labels as given. A list
    that holds every training picture of a class is refused (the model could not learn
    the class), naming it.
    """
    from retrain.data.label_issues import read_label_issues

    listed = set(read_label_issues(path, dataset.image_dir))
    split_of = {r.rel_path: r.split for r in dataset.records}
    training = {p for p in listed if split_of.get(p) == "train"}
    kept = dataset.without(training)
    before = {r.label for r in dataset.records if r.split == "train"}
    after = {r.label for r in kept.records if r.split == "train"}
    emptied = sorted(before - after)
    if emptied:
        raise UserError(
            f"{path} lists every training picture of class {emptied[0]!r}"
            + (f" (and of {', '.join(map(repr, emptied[1:]))})" if emptied[1:] else "")
            + ": without them the model cannot learn it. Delete some of its lines there "
            "(the pictures whose label is right), or move the mislabeled ones to their "
            "class folders")
    if verbose:
        stay = len(listed & set(split_of)) - len(training)
        missing = len(listed - set(split_of))
        print(f"Left out {len(training)} training picture{'s' if len(training) != 1 else ''}"
              f" listed in {path} (--drop_label_issues)"
              + (f"; {stay} listed among the validation and test pictures stay there, "
                 "which are scored on their labels as given" if stay else "")
              + (f"; {missing} listed there are not in {dataset.image_dir}"
                 if missing else ""))
    return kept


def prepare_data(config, verbose=None):
    """Build the base, scan `config.image_dir`, and fill the bottleneck cache if head-only."""
    verbose = config.verbose if verbose is None else verbose
    timings = StepTimes()
    head_only = config.fine_tune_layers() is None
    # The user's likelier mistakes, said before the base is built (as the scan did).
    check_percentages(config.testing_percentage, config.validation_percentage)
    check_image_folder(config.image_dir)
    with timings.step("base"):
        weights_digest = file_digest(config.weights) if os.path.isfile(str(config.weights)) \
            else None
        base = build_base(config, weights_digest)
    if head_only:
        # A picture whose features are cached decoded in an earlier run (the same bytes,
        # by digest): the scan only hashes it, so a filled cache decodes nothing. The
        # others are decoded by the feature pass below, which is their check: the scan
        # only opens them, so each picture is decoded once.
        cache = bottlenecks.BottleneckCache(config.bottleneck_dir, base.key)
        cached = cache.index()

        known_broken = read_broken(config.bottleneck_dir)

        def verify(digest):  # a file an earlier run found broken is not decoded again
            return (bottlenecks.entry_key(digest, "v0") not in cached
                    and digest not in known_broken and "header")
    else:
        verify = True
    with timings.step("scan"):
        dataset = scan_image_folder(config.image_dir, config.testing_percentage,
                                    config.validation_percentage, verify=verify,
                                    verbose=verbose)
        if head_only:
            remembered = {r.path: known_broken[r.digest] for r in dataset.records
                          if r.digest in known_broken}
            dataset = dataset.rescanned(remembered) if remembered else dataset
        if config.drop_label_issues:
            dataset = drop_label_issues(dataset, config.drop_label_issues, verbose)
    forget_broken(dataset.records, [] if verify is True else
                  [r.path for r in dataset.records if verify(r.digest)])
    if verbose:
        for line in dataset.report.summary_lines():
            print(line)
    else:  # a picture left out is never left out silently (nor is one found below)
        for line in broken_lines(dataset.image_dir, dataset.report.broken):
            print(line, file=sys.stderr)
    prepared = PreparedData(config, dataset, base, weights_digest=weights_digest,
                            timings=timings, cache_folder=cache.folder if head_only else None)
    prepared._set_labels()
    if head_only:
        requests = {split: (prepared.records(split),
                            bottlenecks.variant_names(config) if split == "train" else ["v0"])
                    for split in ("train", "validation", "test")}
        with timings.step("bottlenecks"):
            cluster, shared = multi_worker.current_cluster(), 0
            if cluster is not None:  # each worker its share, then the others' from the cache
                shared, broken = feature_shares.share_features(
                    base.extractor, cache, requests, base.image_size, config, cluster, verbose,
                    run=multi_worker.run_name())
                mark_broken({r.path: broken[r.digest] for r in dataset.records
                             if r.digest in broken})
            prepared.features, prepared.computed, left_out = bottlenecks.cached_features(
                base.extractor, cache, requests, base.image_size, config, verbose=verbose)
            prepared.computed += shared
        if left_out:
            remember_broken(config.bottleneck_dir, known_broken, {
                r.digest: left_out[r.path] for r in dataset.records if r.path in left_out})
            # As if the scan had found them: out of the splits, the counts and the classes.
            shown = dataset.report.summary_lines()
            prepared.dataset = dataset = dataset.rescanned(left_out)
            prepared._set_labels()
            if verbose:
                lines = dataset.report.summary_lines()
                files = "file" if len(left_out) == 1 else "files"
                print(f"after leaving out {len(left_out)} broken {files}: {lines[0]}")
                for line in lines[1:]:
                    if line not in shown and not line.startswith(("warning: skipped broken", "  ")):
                        print(line)
    return prepared
