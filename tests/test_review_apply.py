"""Going through a review's flagged pictures: `label_review.html` shows them worst first
with a choice each, and `kapps review --apply DECISIONS` moves exactly the pictures chosen
(all checked first, nothing overwritten, each move logged), `--undo LOG` moves them back.

The review and the decisions are written by hand here (no review runs, no TensorFlow);
one test drives the page in headless Chromium where it is installed.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser

import pytest

from retrain.review import relabel
from retrain.cli.review import main

CLASSES = ("cats", "dogs", "birds")


@pytest.fixture
def pets(tmp_path):
    """A folder of three classes, three small files each, and a review flagging three."""
    images = tmp_path / "pets"
    for name in CLASSES:
        (images / name).mkdir(parents=True)
        for i in range(3):
            (images / name / f"{name[0]}{i}.png").write_bytes(f"{name} {i}".encode())
    review = {"image_dir": str(images), "flagged": [
        {"rank": 1, "path": "cats/c0.png", "given_label": "cats", "likely_label": "dogs",
         "self_confidence": 0.012},
        {"rank": 2, "path": "dogs/d1.png", "given_label": "dogs", "likely_label": "birds",
         "self_confidence": 0.2},
        {"rank": 3, "path": "birds/b2.png", "given_label": "birds", "likely_label": "cats",
         "self_confidence": 0.41}],
        "confident_joint": {"classes": sorted(CLASSES)}}
    return images, review, tmp_path / "out"


def snapshot(folder):
    """Every file under `folder`: relative path -> bytes."""
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name),
                                                                    "rb").read()
            for root, _, names in os.walk(folder) for name in names}


def decide(tmp_path, decisions, name="label_decisions.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"format": relabel.FORMAT, "decisions": decisions}))
    return str(path)


class Cards(HTMLParser):
    """The cards of a page: their data attributes and the picture each shows."""

    def __init__(self):
        super().__init__()
        self.cards = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("class") == "card":
            self.cards.append({k[5:]: v for k, v in attrs.items() if k.startswith("data-")})
        elif tag == "img" and self.cards:
            self.cards[-1]["src"] = attrs["src"]
        elif tag == "option" and self.cards:
            self.cards[-1].setdefault("options", []).append(attrs["value"])


def test_the_page_shows_each_flagged_picture_worst_first(pets):
    images, review, out = pets
    path = relabel.write_review_page(review, str(out / relabel.PAGE_FILE))
    page = Cards()
    page.feed(open(path, encoding="utf-8").read())
    assert [(c["rank"], c["path"], c["given"], c["likely"]) for c in page.cards] == [
        ("1", "cats/c0.png", "cats", "dogs"), ("2", "dogs/d1.png", "dogs", "birds"),
        ("3", "birds/b2.png", "birds", "cats")]
    for card in page.cards:  # each picture by a relative link that reaches the user's file
        assert not card["src"].startswith(("/", "file:", "http"))
        assert open(os.path.join(out, card["src"]), "rb").read() == \
            (images / card["path"]).read_bytes()
        assert card["options"] == sorted(set(CLASSES) - {card["given"]})
    text = open(path, encoding="utf-8").read()
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_apply_moves_exactly_the_chosen_pictures_and_undo_restores_the_folder(pets, tmp_path,
                                                                             capsys):
    images, _, out = pets
    before = snapshot(images)
    decisions = decide(tmp_path, [
        {"path": "cats/c0.png", "action": "move", "to": "dogs"},
        {"path": "dogs/d1.png", "action": "keep"},
        {"path": "birds/b2.png", "action": "leave_out"},
        {"path": "birds/b1.png", "action": "move", "to": "cats"}])
    assert main(["--apply", decisions, "--image_dir", str(images), "--output_dir", str(out)]) == 0
    after = snapshot(images)
    assert set(before) - set(after) == {"cats/c0.png", "birds/b1.png"}
    assert set(after) - set(before) == {"dogs/c0.png", "cats/b1.png"}
    assert after["dogs/c0.png"] == before["cats/c0.png"]
    assert after["cats/b1.png"] == before["birds/b1.png"]
    printed = capsys.readouterr().out
    assert "moved cats/c0.png -> dogs/c0.png" in printed and "2 moved" in printed
    log = [json.loads(line) for line in open(out / relabel.MOVES_FILE)]
    assert [(e["from"], e["to"]) for e in log] == [("cats/c0.png", "dogs/c0.png"),
                                                   ("birds/b1.png", "cats/b1.png")]
    issues = [line for line in open(out / "label_issues.txt").read().splitlines()
              if not line.startswith("#")]
    assert issues == ["birds/b2.png"]  # left out of training, and not moved

    assert main(["--undo", str(out / relabel.MOVES_FILE), "--image_dir", str(images)]) == 0
    assert snapshot(images) == before
    # The undo is logged too: a second one has nothing left to do.
    assert main(["--undo", str(out / relabel.MOVES_FILE), "--image_dir", str(images)]) == 0
    assert "nothing left to undo" in capsys.readouterr().out
    assert snapshot(images) == before


def test_keep_moves_nothing(pets, tmp_path):
    images, review, out = pets
    before = snapshot(images)
    decisions = decide(tmp_path, [{"path": f["path"], "action": "keep"}
                                  for f in review["flagged"]])
    assert main(["--apply", decisions, "--image_dir", str(images), "--output_dir", str(out)]) == 0
    assert snapshot(images) == before
    assert open(out / relabel.MOVES_FILE).read() == ""


@pytest.mark.parametrize("decision, word", [
    ({"path": "cats/c0.png", "action": "move", "to": "dogs", "clash": True}, "dogs/c0.png"),
    ({"path": "../outside.png", "action": "move", "to": "dogs"}, "../outside.png"),
    ({"path": "/etc/passwd", "action": "move", "to": "dogs"}, "/etc/passwd"),
    ({"path": "cats/c9.png", "action": "move", "to": "dogs"}, "cats/c9.png"),
    ({"path": "cats/c0.png", "action": "move", "to": "dgos"}, "dgos"),
    ({"path": "cats/c0.png", "action": "move", "to": "../dogs"}, "../dogs"),
    ({"path": "cats/c0.png", "action": "throw_away"}, "throw_away"),
    ({"path": "dogs/d2.png", "action": "move", "to": "cats"}, "dogs/d2.png"),  # twice
])
def test_a_bad_decision_is_one_line_exit_2_and_nothing_moves(pets, tmp_path, capsys,
                                                             decision, word):
    images, _, out = pets
    if decision.pop("clash", False):
        (images / "dogs" / "c0.png").write_bytes(b"another dog")
    before = snapshot(images)
    # A good decision first: the bad one must stop it too.
    decisions = decide(tmp_path, [{"path": "birds/b0.png", "action": "move", "to": "cats"},
                                  {"path": "dogs/d2.png", "action": "leave_out"}, decision])
    code = main(["--apply", decisions, "--image_dir", str(images), "--output_dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and word in err[0], err
    assert snapshot(images) == before
    assert not (out / relabel.MOVES_FILE).exists()


def test_two_pictures_moved_onto_one_name_are_refused_before_either_moves(pets, tmp_path,
                                                                          capsys):
    images, _, out = pets
    (images / "dogs" / "c0.png").write_bytes(b"a dog named like a cat")
    before = snapshot(images)
    decisions = decide(tmp_path, [{"path": "cats/c0.png", "action": "move", "to": "birds"},
                                  {"path": "cats/c1.png", "action": "move", "to": "dogs"},
                                  {"path": "dogs/c0.png", "action": "move", "to": "birds"}])
    assert main(["--apply", decisions, "--image_dir", str(images), "--output_dir", str(out)]) == 2
    assert "birds/c0.png exists already" in capsys.readouterr().err
    assert snapshot(images) == before


def test_the_apply_path_loads_no_tensorflow(pets, tmp_path):
    images, _, out = pets
    decisions = decide(tmp_path, [{"path": "cats/c0.png", "action": "move", "to": "dogs"}])
    probe = ("import sys\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
             "            raise ImportError('blocked: ' + name)\n"
             "sys.meta_path.insert(0, Block())\n"
             "from kapps.cli import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", probe, "review", "--apply", decisions,
                           "--image_dir", str(images), "--output_dir", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (images / "dogs" / "c0.png").read_bytes() == b"cats 0"


def test_the_page_in_a_browser_downloads_the_choices(pets, tmp_path):
    pytest.importorskip("selenium", reason="the browser test needs selenium")
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (browser_path and driver_path):
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    images, review, out = pets
    page = relabel.write_review_page(review, str(out / relabel.PAGE_FILE))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except Exception as err:  # a browser that cannot start here
        pytest.skip(f"headless chromium does not start: {str(err).splitlines()[0]}")
    try:
        driver.execute_cdp_cmd("Page.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(downloads)})
        driver.get("file://" + os.path.abspath(page))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 3
        assert driver.execute_script("return document.querySelector('.card img').naturalWidth"
                                     ) == 0  # the fake pictures do not decode, but load
        cards[0].find_element(By.CSS_SELECTOR, "input[value=likely]").click()
        Select(cards[1].find_element(By.TAG_NAME, "select")).select_by_value("cats")
        cards[2].find_element(By.CSS_SELECTOR, "input[value=leave_out]").click()
        driver.find_element(By.ID, "download").click()
        target = downloads / relabel.DECISIONS_FILE
        deadline = time.monotonic() + 20
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        got = json.loads(target.read_text())
    finally:
        driver.quit()
    assert got["image_dir"] == str(images) and got["format"] == relabel.FORMAT
    assert got["decisions"] == [{"path": "cats/c0.png", "action": "move", "to": "dogs"},
                                {"path": "dogs/d1.png", "action": "move", "to": "cats"},
                                {"path": "birds/b2.png", "action": "leave_out"}]
    # And what it downloaded applies.
    assert main(["--apply", str(target), "--image_dir", str(images), "--output_dir",
                 str(out)]) == 0
    assert (images / "dogs" / "c0.png").read_bytes() == b"cats 0"
    assert (images / "cats" / "d1.png").read_bytes() == b"dogs 1"


def test_apply_keeps_the_label_issues_list_it_replaces(pets, tmp_path, capsys):
    """The review's list (or the user's edit of it) is renamed with the time, not lost."""
    images, _, out = pets
    out.mkdir()
    (out / "label_issues.txt").write_text("cats/c1.png\n# my own note\n", encoding="utf-8")
    decisions = decide(tmp_path, [{"path": "birds/b2.png", "action": "leave_out"}])
    assert main(["--apply", decisions, "--image_dir", str(images), "--output_dir", str(out)]) == 0
    earlier = [p for p in out.iterdir() if p.name.startswith("label_issues.2")]
    assert len(earlier) == 1 and earlier[0].read_text() == "cats/c1.png\n# my own note\n"
    assert earlier[0].name in capsys.readouterr().out
    assert "birds/b2.png" in (out / "label_issues.txt").read_text()
