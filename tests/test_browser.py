"""The explorer page in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium."""

import io
import shutil
import tempfile
import time

import numpy as np
import pytest
from _serve_support import make_store, running_server, store_vectors
from PIL import Image

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,800", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    store, images = make_store(tmp)
    with running_server(store, "--images-root", str(images), log=tmp / "serve.log") as base:
        browser.get(base + "/")
        yield browser, base, store, tmp


def wait_for(condition, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def map_pixels(driver) -> np.ndarray:
    from selenium.webdriver.common.by import By

    png = driver.find_element(By.ID, "map").screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def coloured(pixels: np.ndarray) -> int:
    """Pixels that are clearly coloured (not white, grey or black text)."""
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def tiles_requested(driver) -> set[tuple[int, int, int]]:
    return {tuple(map(int, src.split("/api/tiles/")[1].split(".png")[0].split("/")))
            for src in driver.execute_script(
                "return Array.from(document.querySelectorAll('img.leaflet-tile')).map(i => i.src)")}


def test_the_page_shows_the_map_rows_and_probabilities(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver, base, store, tmp = page
    wait_for(lambda: driver.execute_script(
        "return document.querySelectorAll('img.leaflet-tile-loaded').length > 0"), what="tiles to load")
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#cluster-list .chip")) > 0, what="the cluster list")
    time.sleep(0.5)
    driver.save_screenshot(str(tmp / "page.png"))
    before = map_pixels(driver)
    assert coloured(before) > 2000, "the map shows no coloured points"
    assert len(driver.find_elements(By.CSS_SELECTOR, ".cluster-label")) >= 3  # keywords at the cluster centres
    # the labels shown do not overlap (where two would, the larger cluster's is shown)
    shown = driver.execute_script(
        "return Array.from(document.querySelectorAll('.cluster-text')).filter(e => e.style.visibility !== 'hidden')"
        ".map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
    assert len(shown) >= 2
    for i, a in enumerate(shown):
        for b in shown[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    first_zoom = driver.execute_script("return map.getZoom()")
    assert max(z for z, _, _ in tiles_requested(driver)) == first_zoom

    # zoom in twice: deeper tiles are fetched and drawn
    driver.execute_script("map.setZoom(map.getZoom() + 2, {animate: false})")
    wait_for(lambda: any(z == first_zoom + 2 for z, _, _ in tiles_requested(driver)), what="deeper tiles")
    wait_for(lambda: driver.execute_script(
        "return Array.from(document.querySelectorAll('img.leaflet-tile')).every(i => i.complete)"), what="tiles")
    time.sleep(0.5)
    assert coloured(map_pixels(driver)) > 1000
    driver.save_screenshot(str(tmp / "zoomed.png"))

    # click on a stored point: its row shows up
    row = 1500
    driver.execute_script("map.setZoom(map.getZoom() + 2, {animate: false})")
    xy = driver.execute_script(
        f"const r = await (await fetch('/api/rows/{row}')).json(); map.setView(toLatLng(r.x, r.y), map.getZoom(), "
        "{animate: false}); const p = map.latLngToContainerPoint(toLatLng(r.x, r.y)); return [p.x, p.y];")
    map_el = driver.find_element(By.ID, "map")
    size = map_el.size
    ActionChains(driver).move_to_element_with_offset(map_el, xy[0] + 4 - size["width"] / 2,
                                                     xy[1] - size["height"] / 2).click().perform()  # 4 px off
    wait_for(lambda: f"row {row}" in driver.find_element(By.ID, "point").text, what=f"row {row} in the point panel")
    text = driver.find_element(By.ID, "point").text
    assert "cluster" in text and "confidence" in text
    # ... and a ring marks it on the map: on the point itself, not where the click was
    ring = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "path.picked-mark"), what="the picked point's ring")[0]
    centre = driver.execute_script("const b = arguments[0].getBoundingClientRect(); const m = "
                                   "document.getElementById('map').getBoundingClientRect(); "
                                   "return [b.left - m.left + b.width / 2, b.top - m.top + b.height / 2];", ring)
    assert abs(centre[0] - xy[0]) <= 1.5 and abs(centre[1] - xy[1]) <= 1.5, (centre, xy)
    driver.save_screenshot(str(tmp / "picked.png"))
    # a click where no point is (left of the data's square, where no cluster's label lies: a label is
    # clickable, and a label may stick out of the square) takes the ring away
    empty = driver.execute_script(
        "map.fitBounds(L.latLngBounds([[-256, 0], [0, 256]]), {animate: false}); "
        "const m = document.getElementById('map').getBoundingClientRect(); "
        "for (let y = -16; y > -256; y -= 16) { const p = map.latLngToContainerPoint(L.latLng(y, -4)); "
        "  const e = document.elementFromPoint(m.left + p.x, m.top + p.y); "
        "  if (e && !e.closest('.cluster-label')) return [p.x, p.y]; }")
    assert empty and 0 < empty[0] < size["width"] and 0 < empty[1] < size["height"], empty
    ActionChains(driver).move_to_element_with_offset(map_el, empty[0] - size["width"] / 2,
                                                     empty[1] - size["height"] / 2).click().perform()
    wait_for(lambda: "No point within" in driver.find_element(By.ID, "point").text, what="the empty click's answer")
    assert not driver.find_elements(By.CSS_SELECTOR, "path.picked-mark")

    # a vector typed into the query box: probabilities for every cluster, a marker on the map
    vector = store_vectors(store, [row])[0]
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys("[" + ", ".join(f"{v:.6f}" for v in vector) + "]")
    driver.find_element(By.ID, "ask").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#probabilities .bar"), what="probabilities")
    info = driver.execute_script("return state.info")
    bars = driver.find_elements(By.CSS_SELECTOR, "#probabilities .bar")
    assert len(bars) == info["k"]
    shown = [float(b.text.split()[-1]) for b in bars]
    assert abs(sum(shown) - 1) < 0.01
    label = driver.execute_script(f"return (await (await fetch('/api/rows/{row}')).json()).label")
    assert f"cluster {label}" in driver.find_element(By.ID, "answer-label").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == 1
    assert driver.execute_script("return document.getElementById('csv').href").startswith("blob:")
    assert driver.find_elements(By.CSS_SELECTOR, "path.leaflet-interactive")  # the query's marker
    driver.save_screenshot(str(tmp / "query.png"))

    # a failed query clears the previous answer and its marker, and says why beside the box
    box.clear()
    box.send_keys("[1, 2]")
    driver.find_element(By.ID, "ask").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#answer .error"), what="the query's error")
    assert "dim" in driver.find_element(By.CSS_SELECTOR, "#answer .error").text
    assert not driver.find_elements(By.CSS_SELECTOR, "#probabilities .bar")
    assert not driver.find_elements(By.CSS_SELECTOR, "path.leaflet-interactive")
    assert driver.find_element(By.ID, "error").text == ""  # (the header keeps no stale error)

    # a cluster's panel: keywords, representatives and members
    driver.find_element(By.CSS_SELECTOR, "#cluster-list .chip").click()
    wait_for(lambda: "keywords:" in driver.find_element(By.ID, "cluster").text, what="the cluster panel")
    assert "representatives" in driver.find_element(By.ID, "cluster").text
    assert driver.find_element(By.ID, "error").text == ""

    problems = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")
                and not ("/api/predict" in entry["message"] and "422" in entry["message"])]  # (the bad query's)
    assert problems == [], problems
