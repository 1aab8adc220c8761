"""The `kapps serve` page end to end, in a real headless Chromium driven by Selenium.

The server runs on uvicorn in a thread on a free loopback port; the browser uploads
digit pictures through the page's file input and the test reads what the page shows.
It needs Debian's `chromium` and `chromium-driver` (`apt-get install chromium
chromium-driver`) and skips, saying so, where they are missing. Selenium is pointed at
that chromedriver and browser, so selenium-manager never downloads anything.

Set KAPPS_SERVE_SCREENSHOT=docs/img/serve.png to save the page with its answers.
"""
import json
import os
import shutil
import threading
import time
import urllib.request

import pytest

pytest.importorskip("fastapi", reason="kapps serve needs fastapi: pip install -e '.[dev]'")
pytest.importorskip("selenium", reason="the browser test needs selenium: pip install -e '.[dev]'")

from test_serve import ZH, b64, export_digits_model, right_answers  # noqa: E402

from retrain import Predictor  # noqa: E402
from retrain.serving import create_app, listen  # noqa: E402

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=760,900"]


def _browser_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    return browser, driver


def running(app):
    """A live uvicorn server for `app` on a free loopback port, in a thread: yields its base
    URL, then stops it (a generator for module fixtures)."""
    import uvicorn

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a live server for a digits model with Chinese translations."""
    folder = tmp_path_factory.mktemp("browser")
    model_dir = export_digits_model(str(folder / "digits"))
    zh = folder / "zh.csv"
    zh.write_text("".join(f"{d},{ZH[d]}\n" for d in range(10)), encoding="utf-8")
    predictor = Predictor(model_dir, translations=str(zh))
    for url in running(create_app({"digits": predictor, "digits-copy": predictor})):
        yield url, predictor


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser_path, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # selenium-manager, if it ever runs, stays offline
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except Exception as err:  # a browser that cannot start here (no display libs, ...)
        pytest.skip(f"headless chromium does not start: {str(err).splitlines()[0]}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _classify_api(url, png):
    request = urllib.request.Request(f"{url}/v1/models/digits:classify?top_k=3",
                                     data=json.dumps({"b64": b64(png)}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["predictions"]


def test_page_shows_top3_with_translations_and_explains_a_non_picture(browser, server,
                                                                      tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, predictor = server
    samples = right_answers(predictor, count=10)
    chosen = [samples[7], samples[3]]
    paths = []
    for png, digit in chosen:
        path = tmp_path / f"digit_{digit}.png"
        path.write_bytes(png)
        paths.append(str(path))

    browser.get(url + "/")
    picker = browser.find_element(By.ID, "model")
    _wait(browser, lambda d: len(Select(picker).options) == 2)
    assert picker.is_displayed()  # two models: the picker shows
    Select(picker).select_by_value("digits")
    browser.find_element(By.ID, "files").send_keys("\n".join(paths))
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card .answer")) == 6)

    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert [c.find_element(By.CSS_SELECTOR, ".name").text for c in cards] == \
        [os.path.basename(p) for p in paths]
    for card, (png, digit) in zip(cards, chosen):
        shown = [(a.get_attribute("data-label"), a.find_element(By.CSS_SELECTOR, ".translation").text)
                 for a in card.find_elements(By.CSS_SELECTOR, ".answer")]
        expected = _classify_api(url, png)
        assert shown == [(p["label"], p["translation"]) for p in expected]
        assert shown[0] == (str(digit), ZH[digit])
        assert f"{100 * expected[0]['score']:.1f}%" in card.text
    screenshot = tmp_path / "serve.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get("KAPPS_SERVE_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["KAPPS_SERVE_SCREENSHOT"])

    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture", encoding="utf-8")
    files = browser.find_element(By.ID, "files")
    files.clear()  # chromedriver adds to a `multiple` input's files; a user's choice replaces
    files.send_keys(str(notes))
    error = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .error"))
    assert "notes.txt cannot be read" in error[0].text
    assert not browser.find_elements(By.CSS_SELECTOR, "#results .answer")
