"""Scanning a user's image folder: odd and broken files, a stable split, duplicates, report."""
import json
import os
import shutil

import pytest

import imagegen
from retrain.data.dataset import BROKEN_SHOWN, REPORT_FILENAME, scan_image_folder, write_report
from retrain.demo import write_digits_folder
from kapps.errors import UserError
from retrain.data.images import load_image
from retrain.data.split import which_split

BROKEN = {"cat/trunc.jpg": "truncated", "cat/empty.jpg": "empty", "cat/text.jpg": "not a picture",
          "only_broken/x.png": "empty"}


@pytest.fixture
def messy_dir(tmp_path):
    """A folder with every kind of picture, broken files, an empty class and a Unicode class."""
    root = tmp_path / "pictures"
    red, green, blue = (220, 30, 30), (30, 200, 40), (30, 60, 220)
    cat = root / "cat"
    for i, name in enumerate(["a.jpg", "b.JPG", "c.jpeg", "d.png", "e.gif", "f.bmp", "g.webp"]):
        imagegen.write_image(cat / name, red, fmt="JPEG" if name.endswith("JPG") else None,
                             noise=10, seed=i)
    imagegen.write_image(cat / "gray.png", red, mode="L")
    imagegen.write_image(cat / "rgba.png", red, mode="RGBA")
    imagegen.write_image(cat / "cmyk.jpg", red, mode="CMYK")
    imagegen.write_image(cat / "deep.png", red, mode="I;16")
    imagegen.write_palette_png_with_transparency(cat / "pal.png")
    imagegen.write_exif_rotated_jpeg(cat / "rotated.jpg")
    imagegen.write_image(cat / "nested" / "sub" / "h.png", red, noise=10, seed=99)
    imagegen.write_truncated_jpeg(cat / "trunc.jpg")
    imagegen.write_bytes(cat / "empty.jpg", b"")
    imagegen.write_bytes(cat / "text.jpg", b"this is not a jpeg\n")
    imagegen.write_bytes(cat / "notes.txt", b"not a picture, not an image extension\n")
    imagegen.make_class_folder(root, {"dog": 6, "猫": 5})
    shutil.copyfile(cat / "a.jpg", root / "dog" / "same_as_cat_a.jpg")
    (root / "empty_class").mkdir()
    imagegen.write_bytes(root / "only_broken" / "x.png", b"")
    imagegen.write_image(root / "loose.jpg", blue)
    imagegen.write_image(root / ".thumbnails" / "t.jpg", green)
    return root


def _snapshot(folder):
    return {os.path.relpath(os.path.join(r, f), folder): (open(os.path.join(r, f), "rb").read(),
                                                          os.stat(os.path.join(r, f)).st_mtime_ns)
            for r, _, fs in os.walk(folder) for f in fs}


def test_messy_folder_scans_and_reports_every_problem(messy_dir):
    data = scan_image_folder(messy_dir, testing_percentage=20, validation_percentage=20)
    report = data.report
    assert data.classes == ["cat", "dog", "猫"]
    assert dict(report.broken).keys() == BROKEN.keys()
    for path, reason in report.broken:
        assert BROKEN[path] in reason
    cat = sorted(r.rel_path for r in data.records if r.label == "cat")
    assert len(cat) == 14 and "cat/nested/sub/h.png" in cat and "cat/text.jpg" not in cat
    assert {r.label for r in data.records} == {"cat", "dog", "猫"}
    assert all(data.classes[r.class_index] == r.label for r in data.records)
    skipped = dict(report.skipped_folders)
    assert set(skipped) == {"empty_class", "only_broken"}
    assert "no picture files" in skipped["empty_class"] and "1 picture" in skipped["only_broken"]
    assert any("empty_class" in w for w in report.warnings)
    assert [p for p, _ in report.ignored_files] == ["loose.jpg"]
    assert not any(".thumbnails" in r.rel_path for r in data.records)
    assert sum(sum(c.values()) for c in data.counts().values()) == len(data.records) == 14 + 7 + 5


def test_duplicates_across_classes_are_flagged(messy_dir):
    report = scan_image_folder(messy_dir).report
    assert len(report.duplicates) == 1
    group = report.duplicates[0]
    assert sorted(group.rel_paths) == ["cat/a.jpg", "dog/same_as_cat_a.jpg"]
    assert group.cross_class and sorted(group.labels) == ["cat", "dog"]
    assert any("cat, dog" in w and "same picture" in w for w in report.warnings)


def test_duplicate_in_two_splits_is_flagged(tmp_path):
    imagegen.make_class_folder(tmp_path, {"a": 3, "b": 3})
    names = [f"copy{i}.png" for i in range(50)]
    train = next(n for n in names if which_split(n, 30, 30) == "train")
    test = next(n for n in names if which_split(n, 30, 30) == "test")
    same = next(n for n in names if n != train and which_split(n, 30, 30) == "train")
    for name in (train, test, same):
        shutil.copyfile(tmp_path / "a" / "a_000.png", tmp_path / "a" / name)
    report = scan_image_folder(tmp_path, testing_percentage=30, validation_percentage=30).report
    (group,) = report.duplicates
    assert len(group.rel_paths) == 4 and not group.cross_class and group.cross_split
    assert any("splits" in w and f"a/{test}" in w for w in report.warnings)


def test_no_duplicates_means_an_empty_list(tmp_path):
    imagegen.make_class_folder(tmp_path, {"a": 8, "b": 8})
    report = scan_image_folder(tmp_path).report
    assert report.duplicates == [] and report.broken == []


def test_user_files_are_never_changed(messy_dir, tmp_path):
    before = _snapshot(messy_dir)
    data = scan_image_folder(messy_dir)
    write_report(data, tmp_path / "out.json")
    load_image(data.records[0].path)
    assert _snapshot(messy_dir) == before


def test_report_json_and_summary(messy_dir, tmp_path):
    data = scan_image_folder(messy_dir)
    out = tmp_path / "model"
    out.mkdir()
    path = write_report(data, out)
    assert path == str(out / REPORT_FILENAME)
    assert os.listdir(out) == [REPORT_FILENAME]  # no temporary file left behind
    saved = json.loads(open(path, encoding="utf-8").read())
    assert saved == json.loads(json.dumps(data.report.to_dict()))
    assert "猫" in saved["counts"] and {b["path"] for b in saved["broken"]} == set(BROKEN)
    assert saved["duplicates"][0]["cross_class"] is True
    text = "\n".join(data.report.summary_lines())
    for broken in BROKEN:
        assert broken in text
    assert "3 classes, 26 pictures" in text and "empty_class" in text


def test_many_broken_files_are_named_up_to_ten_then_counted_by_reason(tmp_path):
    """1% of a large folder broken must not bury the summary: the first ten by name, one
    line of counts by reason, and every one in the report's JSON."""
    imagegen.make_class_folder(tmp_path, {"a": 3, "b": 3})
    for i in range(9):
        imagegen.write_bytes(tmp_path / "a" / f"empty_{i}.png", b"")
    for i in range(4):
        imagegen.write_bytes(tmp_path / "b" / f"text_{i}.jpg", b"not a picture at all")
    data = scan_image_folder(tmp_path)
    lines = data.report.summary_lines()
    named = [line for line in lines if line.startswith("warning: skipped broken file")]
    assert len(named) == BROKEN_SHOWN == 10
    (total,) = [line for line in lines if "broken files left out in all" in line]
    assert total.startswith("warning: 13 broken files left out in all (9 the file is empty, "
                            "4 not a ") and REPORT_FILENAME in total
    assert len(data.report.to_dict()["broken"]) == 13


def test_split_is_stable_when_pictures_are_added_or_the_folder_moves(tmp_path):
    root = tmp_path / "v1"
    imagegen.make_class_folder(root, {"a": 30, "b": 30})
    first = {r.rel_path: r.split for r in scan_image_folder(root, 20, 20).records}
    assert set(first.values()) == {"train", "validation", "test"}
    for i in range(30, 60):
        imagegen.write_image(root / "a" / f"new_{i}.png", (0, 0, 0), noise=20, seed=i)
    imagegen.make_class_folder(root, {"a": 0, "b": 0, "c": 10})
    second = {r.rel_path: r.split for r in scan_image_folder(root, 20, 20).records}
    assert len(second) == 60 + 30 + 10
    assert {k: second[k] for k in first} == first
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(root, moved)
    assert scan_image_folder(moved, 20, 20).split_manifest() == \
        scan_image_folder(root, 20, 20).split_manifest()


def test_nohash_files_share_a_split(tmp_path):
    imagegen.make_class_folder(tmp_path, {"other": 3})
    for person in ["ann", "ben", "cid", "dan"]:
        for i in range(4):
            imagegen.write_image(tmp_path / "people" / f"{person}_nohash_{i}.png", (9, 9, 9),
                                 noise=20, seed=hash((person, i)) % 1000)
    data = scan_image_folder(tmp_path, 30, 30)
    for person in ["ann", "ben", "cid", "dan"]:
        splits = {r.split for r in data.records if r.rel_path.startswith(f"people/{person}_")}
        assert splits == {which_split(person, 30, 30)}


def test_manifest_split_and_labels(tmp_path):
    imagegen.make_class_folder(tmp_path, {"b": 20, "a": 20})
    data = scan_image_folder(tmp_path)
    manifest = data.split_manifest()
    assert list(manifest) == ["train", "validation", "test"]
    assert sorted(sum(manifest.values(), [])) == sorted(r.rel_path for r in data.records)
    assert manifest["test"] == [r.rel_path for r in data.split("test")]
    assert data.classes == ["a", "b"]
    with pytest.raises(ValueError):
        data.split("training")


def test_small_class_warns(tmp_path):
    imagegen.make_class_folder(tmp_path, {"big": 40, "tiny": 1})
    warnings = scan_image_folder(tmp_path).report.warnings
    tiny = [w for w in warnings if "'tiny'" in w]
    assert len(tiny) == 1 and "1 in all" in tiny[0]
    assert not any("'big'" in w for w in warnings)
    assert not any("'tiny'" in w for w in scan_image_folder(tmp_path, 0, 0).report.warnings)


def test_verify_false_only_hashes(messy_dir):
    data = scan_image_folder(messy_dir, verify=False, workers=1)
    assert data.report.broken == []
    assert {"cat/text.jpg", "cat/empty.jpg"} <= {r.rel_path for r in data.records}


@pytest.mark.parametrize("make,message", [
    (lambda root: None, "does not exist"),
    (lambda root: imagegen.write_bytes(root, b"x"), "is a file"),
    (lambda root: imagegen.make_class_folder(root, {"only": 3}), "only class 'only'"),
    (lambda root: (imagegen.make_class_folder(root, {"ok": 2}),
                   imagegen.write_bytes(root / "bad" / "x.jpg", b"")), "only class 'ok'"),
    (lambda root: os.makedirs(root / "empty"), "no class"),
    (lambda root: [imagegen.write_image(root / f"p{i}.jpg", (200, 0, 0)) for i in range(3)],
     "has 3 pictures at its top level (e.g. p0.jpg) but no class sub-folders; put the "
     "pictures in one sub-folder per class"),
])
def test_unusable_folders_are_one_line_user_errors(tmp_path, make, message):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(UserError) as info:
        scan_image_folder(root)
    text = str(info.value)
    assert message in text and str(root) in text and "\n" not in text


def test_demo_digits_folder(tmp_path):
    dest = write_digits_folder(tmp_path / "digits")
    def mtimes():
        return {os.path.relpath(os.path.join(r, f), dest): os.stat(os.path.join(r, f)).st_mtime_ns
                for r, _, fs in os.walk(dest) for f in fs}

    files = mtimes()
    assert len(files) == 1797 and sorted(os.listdir(dest)) == [str(d) for d in range(10)]
    first = os.path.join("0", "digit_00000.png")
    assert first in files
    os.remove(os.path.join(dest, first))
    write_digits_folder(dest)  # completes what is missing, leaves the rest
    again = mtimes()
    assert again.keys() == files.keys()
    assert all(again[p] == files[p] for p in files if p != first)
    data = scan_image_folder(dest)
    assert data.classes == [str(d) for d in range(10)] and len(data.records) == 1797
    assert data.report.broken == [] and data.report.skipped_folders == []
    pixels = load_image(os.path.join(dest, first))
    assert pixels.shape == (8, 8, 3) and pixels.max() > 200 and pixels.min() < 30


def test_the_cache_goes_under_a_fresh_home_that_has_no_cache_folder_yet(tmp_path,
                                                                         monkeypatch):
    """A fresh machine's home has no ~/.cache: the cache (and `--demo`'s digits, which
    the README then names under ~/.cache/kapps) must still go there, not to /tmp."""
    from retrain.config import default_bottleneck_dir
    from retrain.demo import demo_image_dir

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KAPPS_CACHE", raising=False)
    assert default_bottleneck_dir() == str(home / ".cache" / "kapps" / "bottlenecks")
    assert demo_image_dir() == str(home / ".cache" / "kapps" / "demo" / "digits")
    (home / ".cache").write_text("a file where the folder would be")
    assert not default_bottleneck_dir().startswith(str(home))


def test_the_counts_table_lines_up_with_chinese_class_names(tmp_path):
    root = imagegen.make_class_folder(tmp_path / "pets", {"cat": 3, "火箭": 3, "é": 3})
    lines = scan_image_folder(root).report.summary_lines()[1:4]
    from retrain.data.dataset import display_width

    # The column after the name starts at the same terminal column on every line.
    assert len({display_width(line[:line.index("train")]) for line in lines}) == 1
    assert display_width("火箭") == 4 and display_width("e\u0301") == 1


def test_pictures_breaking_in_the_pass_are_named_up_to_ten_then_said_once(tmp_path, capsys,
                                                                          monkeypatch):
    """A pass that meets more broken pictures than it names says so in one line, so a
    quiet run (--verbose 0, no summary after) leaves none out silently."""
    from retrain.data import inputs

    monkeypatch.setattr(inputs, "_BROKEN", {})  # as in a fresh process
    for i in range(BROKEN_SHOWN + 3):
        path = tmp_path / f"gone_{i:02d}.jpg"
        path.write_bytes(b"not a picture any more")
        assert inputs._load(str(path).encode(), 0).size == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == BROKEN_SHOWN + 1
    assert all("gone_" in line for line in lines[:-1])
    assert lines[-1].startswith(f"warning: more than {BROKEN_SHOWN} pictures could not be "
                                "decoded") and REPORT_FILENAME in lines[-1]
    assert len(inputs._BROKEN) == BROKEN_SHOWN + 3  # every one counted for the report
