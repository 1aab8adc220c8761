"""The `kapps serve` page's heatmaps, in a real headless Chromium (as test_serve_browser):
tick the box, and each picture shows where the model looked beside its answers.

Skips, saying so, without Debian's `chromium` and `chromium-driver`. Set
KAPPS_EXPLAIN_SCREENSHOT=docs/img/serve_explain.png to save the page with a heatmap.
"""
import os
import shutil

import pytest

pytest.importorskip("fastapi", reason="kapps serve needs fastapi: pip install -e '.[dev]'")
pytest.importorskip("selenium", reason="the browser test needs selenium: pip install -e '.[dev]'")

from test_explain import export_corner_model, marked_picture_file  # noqa: E402
from test_serve_browser import _wait, browser, running  # noqa: E402,F401  (a fixture)

from retrain import Predictor  # noqa: E402
from retrain.serving import create_app  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a live server for the top-left corner model."""
    folder = tmp_path_factory.mktemp("explain-browser")
    zh = folder / "zh.csv"
    zh.write_text("mark,角落标记\nplain,无标记\n", encoding="utf-8")
    predictor = Predictor(export_corner_model(str(folder / "corner"), "top_left"),
                          translations=str(zh))
    yield from running(create_app({"corner": predictor}))


def test_ticking_the_box_shows_the_heatmap_beside_the_answers(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    picture = marked_picture_file(tmp_path, "top_left", "mark.png")
    browser.get(server + "/")
    _wait(browser, lambda d: len(Select(d.find_element(By.ID, "model")).options) == 1)
    box = browser.find_element(By.ID, "explain")
    assert not box.is_selected()  # plain answers unless asked
    box.click()
    browser.find_element(By.ID, "files").send_keys(picture)
    [heatmap] = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card img.heatmap"))
    _wait(browser, lambda d: heatmap.get_property("naturalWidth") > 0)
    assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    assert (heatmap.get_property("naturalWidth"), heatmap.get_property("naturalHeight")) == \
        (96, 64)
    assert heatmap.is_displayed() and "mark" in heatmap.get_attribute("alt")
    answers = browser.find_elements(By.CSS_SELECTOR, ".card .answer")
    assert [a.find_element(By.CSS_SELECTOR, ".translation").text for a in answers] == \
        ["角落标记", "无标记"]
    screenshot = tmp_path / "explain.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get("KAPPS_EXPLAIN_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["KAPPS_EXPLAIN_SCREENSHOT"])

    box.click()  # untick: the same picture again, answers only
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, ".card img.heatmap")
          and len(d.find_elements(By.CSS_SELECTOR, ".card .answer")) == 2)
