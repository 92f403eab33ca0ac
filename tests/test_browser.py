"""report.html in a real browser: Debian's headless Chromium opens it, every image and table renders.

Skipped, with the reason, where Chromium, ChromeDriver or selenium is absent; .ci/run installs them.
The browser is the system one (never a downloaded build): selenium gets explicit paths, so its
driver manager never runs.
"""
import shutil

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    if not CHROMIUM or not DRIVER:
        pytest.skip("Chromium / ChromeDriver not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_report_renders_every_image_and_table_in_chromium(reported_run, browser, tmp_path):
    browser.get((reported_run / "report.html").as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) > 20  # thumbnails of the queries, the curve, the imagined grid
    broken = [alt for alt, done, w, h in images if not (done and w > 0 and h > 0)]
    assert not broken, f"images that did not render: {broken}"
    tables = browser.execute_script(
        "return Array.from(document.querySelectorAll('table')).map(t => [t.rows.length, t.getBoundingClientRect().height])")
    assert len(tables) >= 2 and all(rows >= 1 and height > 0 for rows, height in tables)
    assert browser.execute_script("return document.querySelectorAll('.image-query li.hit, .caption-query img').length") > 0
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    picture = Image.open(shot).convert("L")
    assert picture.size[0] >= 1000 and len(np.unique(np.asarray(picture))) > 10  # not a blank page
