"""Scan the user's image folder: classes, a stable split, and a report of what was wrong.

The folder holds one sub-folder per class; the sub-folder's name is the label, kept
exactly as written (Unicode, letter case). Pictures may sit in nested folders inside a
class folder. Every picture is decoded once (in a thread pool) so a broken file is
reported and skipped here, not found an hour into training; where the caller decodes
every picture next anyway (a frozen base's feature pass), the scan only opens them and
that decode is the check (`Dataset.rescanned`), so a picture is decoded once per run.
The report also lists
empty class folders, ignored files, duplicate pictures (the same bytes twice, worst
when they carry two labels or sit in two splits) and classes too small for the split.
Nothing in the folder is written, moved or deleted.
"""
from __future__ import annotations

import collections
import concurrent.futures
import copy
import dataclasses
import os
import unicodedata


from retrain.common import atomic
from kapps.errors import UserError
from retrain.data.images import inspect_image, is_image_file, list_image_files
from retrain.data.split import SPLITS, check_percentages, which_split
from retrain.common.timing import progress_bar

REPORT_FILENAME = "dataset_report.json"
# Broken files named one by one in the summary (and on stderr by the feature pass): with
# 1% of 100,000 files broken, a line each buried the summary. The others are counted
# by reason, and every one is in dataset_report.json.
BROKEN_SHOWN = 10


@dataclasses.dataclass
class ImageRecord:
    """One usable picture.

    `rel_path` is relative to the image folder, class folder first, with `/`
    separators (`cat/summer/a.jpg`); the split is computed from the part after the
    class folder.
    """
    path: str
    rel_path: str
    label: str
    class_index: int
    split: str
    digest: str


@dataclasses.dataclass
class DuplicateGroup:
    """Files (relative paths) with identical bytes."""
    digest: str
    rel_paths: list[str]
    labels: list[str]
    splits: list[str]

    @property
    def cross_class(self):
        return len(set(self.labels)) > 1

    @property
    def cross_split(self):
        return len(set(self.splits)) > 1

    def to_dict(self):
        return {"digest": self.digest, "rel_paths": self.rel_paths, "labels": self.labels,
                "splits": self.splits, "cross_class": self.cross_class,
                "cross_split": self.cross_split}


@dataclasses.dataclass
class DatasetReport:
    """What the scan found. Paths are relative to `image_dir`, with `/` separators."""
    image_dir: str
    testing_percentage: float
    validation_percentage: float
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    broken: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped_folders: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    ignored_files: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    duplicates: list[DuplicateGroup] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self):
        """A JSON-ready dict."""
        pair = lambda items: [{"path": p, "reason": r} for p, r in items]  # noqa: E731
        return {
            "image_dir": self.image_dir,
            "testing_percentage": self.testing_percentage,
            "validation_percentage": self.validation_percentage,
            "counts": self.counts,
            "broken": pair(self.broken),
            "skipped_folders": pair(self.skipped_folders),
            "ignored_files": pair(self.ignored_files),
            "duplicates": [group.to_dict() for group in self.duplicates],
            "warnings": self.warnings,
        }

    def summary_lines(self):
        """Human-readable lines: per-class counts, then every problem found.

        Skipped class folders appear among the warnings.
        """
        total = {s: sum(c[s] for c in self.counts.values()) for s in SPLITS}
        lines = [f"{len(self.counts)} classes, {sum(total.values())} pictures in "
                 f"{self.image_dir} (train {total['train']}, validation "
                 f"{total['validation']}, test {total['test']})"]
        width = max((display_width(name) for name in self.counts), default=0)
        for name, c in self.counts.items():
            pad = " " * (width - display_width(name))
            lines.append(f"  {name}{pad}  train {c['train']:>5}  validation "
                         f"{c['validation']:>5}  test {c['test']:>5}")
        lines.extend(broken_lines(self.image_dir, self.broken))
        for path, reason in self.ignored_files:
            lines.append(f"ignored {path}: {reason}")
        for group in self.duplicates:
            kind = (" with different labels" if group.cross_class else
                    " in different splits" if group.cross_split else "")
            lines.append(f"identical files{kind}: {', '.join(group.rel_paths)}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return lines


def broken_line(path, reason):
    """The one line that reports a picture left out because it cannot be read, wherever it
    was found (the scan, the feature pass, training)."""
    return f"warning: skipped broken file {path}: {reason}"


def broken_lines(image_dir, broken):
    """The lines that report `broken` [(path in `image_dir`, reason)]: the first
    `BROKEN_SHOWN` by name, then, if there are more, one line of counts by reason."""
    lines = [broken_line(os.path.join(image_dir, path), reason)
             for path, reason in broken[:BROKEN_SHOWN]]
    if len(broken) > BROKEN_SHOWN:
        counts = collections.Counter(reason.split(" (")[0] for _, reason in broken)
        lines.append(f"warning: {len(broken):,} broken files left out in all ("
                     + ", ".join(f"{n:,} {reason}" for reason, n in counts.most_common())
                     + f"); the first {BROKEN_SHOWN} are named above, every one in "
                     f"{REPORT_FILENAME} beside the model")
    return lines


def display_width(text):
    """Columns `text` takes in a terminal: two for each wide character (Chinese, Japanese,
    Korean), none for a combining mark, one for the others."""
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


@dataclasses.dataclass
class Dataset:
    """The usable pictures of an image folder, with their labels and splits."""
    image_dir: str
    classes: list[str]
    records: list[ImageRecord]
    report: DatasetReport
    # What the scan read, for `rescanned`: (listing report, candidates, (digest, reason)s).
    scanned: tuple = dataclasses.field(default=None, repr=False, compare=False)

    def split(self, name):
        """The records of split `name` (`"train"`, `"validation"` or `"test"`), in stable order."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; received {name!r}")
        return [r for r in self.records if r.split == name]

    def leave_out(self, broken):
        """Drop the records of `broken` ({path: reason}, pictures that broke after the scan)
        and list them in the report with the other broken files, so the split manifest
        and the counts hold only the pictures the model really saw."""
        gone = [r for r in self.records if r.path in broken]
        if not gone:
            return
        self.records = [r for r in self.records if r.path not in broken]
        self.report.broken.extend((r.rel_path, broken[r.path]) for r in gone)
        self.report.counts = self.counts()

    def rescanned(self, broken):
        """The dataset the scan would have made had it found the files of `broken`
        ({path: reason}) unreadable: for pictures the scan only opened, whose check is a
        later decode. Unlike `leave_out`, a class left with no picture is skipped (so the
        class indices may change) and fewer than two classes raise `UserError`, as in
        the scan."""
        listing, candidates, results = self.scanned
        results = [(digest, broken.get(path, reason))
                   for (_, path, _), (digest, reason) in zip(candidates, results)]
        return _assemble(listing, candidates, results)

    def without(self, rel_paths):
        """The dataset as if the pictures at `rel_paths` (relative to the image folder, class
        folder first) were not in the folder: every other picture keeps its split (a file's
        split is a hash of its own name), and `rescanned` leaves them out too."""
        listing, candidates, results = self.scanned
        gone = set(rel_paths)
        kept = [(candidate, result) for candidate, result in zip(candidates, results)
                if f"{candidate[0]}/{candidate[2]}" not in gone]
        return _assemble(listing, [c for c, _ in kept], [r for _, r in kept])

    def counts(self):
        """`{class: {"train": n, "validation": n, "test": n}}`."""
        counts = {c: dict.fromkeys(SPLITS, 0) for c in self.classes}
        for r in self.records:
            counts[r.label][r.split] += 1
        return counts

    def split_manifest(self):
        """`{split: [rel_path, ...]}` (class folder first): saved with the model to record
        exactly which pictures it was trained, validated and tested on."""
        return {s: [r.rel_path for r in self.records if r.split == s] for s in SPLITS}


def _rel(path, root):
    return os.path.relpath(path, root).replace(os.sep, "/")


def check_image_folder(image_dir):
    """`UserError` unless `image_dir` is an existing folder (cheap: nothing is read)."""
    if not os.path.exists(image_dir):
        raise UserError(f"image folder {image_dir} does not exist; pass a folder that holds "
                        "one sub-folder of pictures per class")
    if not os.path.isdir(image_dir):
        raise UserError(f"image folder {image_dir} is a file, not a folder; pass a folder "
                        "that holds one sub-folder of pictures per class")


def _class_folders(image_dir, report):
    """Sorted visible sub-folder names; loose top-level files are noted and ignored."""
    classes = []
    for name in sorted(os.listdir(image_dir)):
        if name.startswith("."):
            continue
        if os.path.isdir(os.path.join(image_dir, name)):
            classes.append(name)
        else:
            report.ignored_files.append(
                (name, "a file at the top level belongs to no class; put it in a class folder"))
    return classes


def _inspect_all(paths, verify, workers, verbose=0):
    """`inspect_image` of each of `paths` in a thread pool, in order; a progress bar
    (`retrain.common.timing.progress_bar`) on large folders when `verbose`."""
    if not paths:
        return []
    workers = workers or min(32, (os.cpu_count() or 1) + 4)
    bar = progress_bar(len(paths), "file", verbose)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = []
        for result in pool.map(lambda p: inspect_image(p, verify=verify), paths):
            results.append(result)
            if bar is not None and (len(results) % 1000 == 0 or len(results) == len(paths)):
                bar.update(len(results))
        return results


def _find_duplicates(records):
    by_digest = collections.defaultdict(list)
    for r in records:
        by_digest[r.digest].append(r)
    return [DuplicateGroup(digest, [r.rel_path for r in group], [r.label for r in group],
                           [r.split for r in group])
            for digest, group in sorted(by_digest.items(), key=lambda kv: kv[1][0].rel_path)
            if len(group) > 1]


def _size_warnings(counts, testing_percentage, validation_percentage):
    wanted = {"train": True, "validation": validation_percentage > 0,
              "test": testing_percentage > 0}
    warnings = []
    for name, c in counts.items():
        missing = [s for s in SPLITS if wanted[s] and c[s] == 0]
        if missing:
            warnings.append(
                f"class {name!r} has no {' or '.join(missing)} pictures ({sum(c.values())} in "
                "all); add pictures to it or change the split percentages")
    return warnings


def scan_image_folder(image_dir, testing_percentage=10, validation_percentage=10,
                      verify=True, workers=None, verbose=0):
    """Find the classes and pictures of `image_dir` and check every picture.

    Args:
        image_dir: a folder with one sub-folder per class.
        testing_percentage: share of each class for the test split. Defaults to `10`.
        validation_percentage: share of each class for the validation split.
            Defaults to `10`.
        verify: decode every picture and skip those that fail. With `"header"` a
            picture is only opened (its check is a later decode: see
            `Dataset.rescanned`), with `False` only read and hashed; a function of a
            file's sha1 digest says per file which. Defaults to `True`.
        workers: threads for checking; defaults to the CPU count plus 4 (at most 32).
        verbose: show a progress bar (count, rate, ETA) on a large folder. Defaults
            to `0`.

    Returns:
        A `Dataset`; its `report` lists what was skipped and why.

    Raises:
        UserError: `image_dir` is missing, or has fewer than two classes with a usable
            picture.
    """
    check_percentages(testing_percentage, validation_percentage)
    image_dir = os.fspath(image_dir)
    check_image_folder(image_dir)
    report = DatasetReport(image_dir, testing_percentage, validation_percentage)

    candidates = []  # (class name, path, path relative to the class folder)
    for name in _class_folders(image_dir, report):
        class_dir = os.path.join(image_dir, name)
        files = list_image_files(class_dir)
        if not files:
            others = sum(1 for _, _, fs in os.walk(class_dir) for f in fs if not f.startswith("."))
            reason = ("no picture files (.jpg, .jpeg, .png, .gif, .bmp, .webp)" +
                      (f"; {others} other files ignored" if others else ""))
            report.skipped_folders.append((name, reason))
            continue
        candidates.extend((name, p, _rel(p, class_dir)) for p in files)
    return _assemble(report, candidates, _inspect_all([p for _, p, _ in candidates], verify,
                                                      workers, verbose))


def _assemble(listing, candidates, results):
    """The dataset of the scan's `candidates` [(class, path, path in the class folder)]
    given what reading them gave, `results` [(digest, reason or None)]; `listing` is the
    report of listing the folder (ignored files, folders without pictures)."""
    report = copy.deepcopy(listing)
    image_dir = report.image_dir
    testing_percentage = report.testing_percentage
    validation_percentage = report.validation_percentage
    usable = collections.defaultdict(list)
    found = collections.Counter(name for name, _, _ in candidates)
    for (name, path, rel), (digest, reason) in zip(candidates, results):
        if reason is not None:
            report.broken.append((f"{name}/{rel}", reason))
        else:
            usable[name].append((path, rel, digest))
    for name in found:
        if name not in usable:
            report.skipped_folders.append(
                (name, f"none of its {found[name]} picture files can be read"))

    classes = sorted(usable)
    loose = [name for name, _ in report.ignored_files if is_image_file(name)]
    if not classes and loose:
        raise UserError(f"image folder {image_dir} has {len(loose)} pictures at its top level "
                        f"(e.g. {loose[0]}) but no class sub-folders; put the pictures in one "
                        f"sub-folder per class, named after the class (e.g. "
                        f"{os.path.join(image_dir, 'cat', loose[0])})")
    if len(classes) < 2:
        what = f"only class {classes[0]!r}" if classes else "no class"
        raise UserError(f"image folder {image_dir} has {what} with readable pictures; it needs "
                        "at least two sub-folders of pictures, one per class")

    records = [ImageRecord(path, f"{name}/{rel}", name, index,
                           which_split(rel, testing_percentage, validation_percentage), digest)
               for index, name in enumerate(classes) for path, rel, digest in usable[name]]
    dataset = Dataset(image_dir, classes, records, report, (listing, candidates, results))
    report.counts = dataset.counts()
    report.duplicates = _find_duplicates(records)
    report.warnings.extend(
        f"class folder {name!r} skipped: {reason}" for name, reason in report.skipped_folders)
    for group in report.duplicates:
        if group.cross_class:
            report.warnings.append(
                f"the same picture has labels {', '.join(sorted(set(group.labels)))}: "
                f"{', '.join(group.rel_paths)}; keep it in one class folder only")
        elif group.cross_split:
            report.warnings.append(
                f"the same picture is in the {' and '.join(sorted(set(group.splits)))} splits, "
                f"so test scores are too optimistic: {', '.join(group.rel_paths)}; "
                "delete the extra copies")
    report.warnings.extend(_size_warnings(report.counts, testing_percentage,
                                          validation_percentage))
    return dataset


def write_report(dataset, path):
    """Write `dataset.report` as JSON, atomically, to `path`; return the file's path.

    If `path` is an existing folder the file is `dataset_report.json` inside it.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, REPORT_FILENAME)
    atomic.write_json(path, dataset.report.to_dict())
    return path
