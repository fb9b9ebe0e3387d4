"""The web page in a real headless Chromium against a real `imgrec serve`.

Without Chromium this test fails (it does not skip): `make browser` installs it, and a web
page nobody has opened in a browser is not tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runhelpers import sample_files
from servehelpers import CHROMIUM_FLAGS, chromium_missing_message, running_server, small_model

from imgrec import ImageClassifier

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path):
    missing = chromium_missing_message()
    if missing:
        pytest.fail(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_uploading_a_bee_shows_the_models_prediction(browser, tmp_path_factory, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    model = small_model(tmp_path_factory.getbasetemp())
    bee: Path = sample_files("val", "bees", 1)[0]
    expected = ImageClassifier.load(model).predict(bee, top_k=2)[0]

    with running_server(model, tmp_path / "server.log") as server:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(ec.text_to_be_present_in_element((By.ID, "model"), "bees"))
        assert "ants" in browser.find_element(By.ID, "model").text

        browser.find_element(By.ID, "files").send_keys(str(bee))
        card = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".card.done")))

        rows = card.find_elements(By.CSS_SELECTOR, ".row")
        labels = [row.find_element(By.CSS_SELECTOR, ".label").text for row in rows]
        assert labels[0] == expected.label
        assert labels == expected.classes[: len(labels)]
        percent = rows[0].find_element(By.CSS_SELECTOR, ".pct").text
        assert percent == f"{expected.confidence * 100:.1f}%"
        assert bee.name in card.find_element(By.CSS_SELECTOR, ".name").text
        assert "ms" in card.find_element(By.CSS_SELECTOR, ".latency").text
        image = card.find_element(By.TAG_NAME, "img")
        assert browser.execute_script("return arguments[0].naturalWidth", image) > 0

        # a file that is not an image shows the server's JSON error, not a silent failure
        notes = tmp_path / "notes.png"
        notes.write_text("not a picture", encoding="utf-8")
        browser.find_element(By.ID, "files").send_keys(str(notes))
        failed = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".card.failed")))
        assert "not a usable image" in failed.find_element(By.CSS_SELECTOR, ".error").text

        errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not [e for e in errors if "422" not in e.get("message", "")], errors
        assert server.alive()
