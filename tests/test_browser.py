"""Real browser: headless Chromium (Debian's package) driven by Playwright.

Screenshots land in test-artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright import sync_api

from webapp import create_app

from conftest import live_server, pattern, png

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(model_dir):
    with live_server(create_app(model_dir=model_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "digit.png"
    path.write_bytes(png(pattern(2, 3).resize((96, 96))))
    return path


@pytest.mark.parametrize(
    ("name", "viewport", "javascript"),
    [("desktop", (1280, 900), True), ("phone", (390, 844), True), ("no-js", (1024, 800), False)],
)
def test_upload_shows_label_and_heatmap(browser, base_url, image, name, viewport, javascript):
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, java_script_enabled=javascript
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(base_url)
    page.set_input_files("#image", str(image))
    if javascript:
        page.wait_for_selector("#preview:not([hidden])")
    page.click("button[type=submit]")
    page.wait_for_selector("#label", timeout=15_000)
    label = page.inner_text("#label")
    assert label.split()[0] in ("cat", "crème", "dog")
    heatmap = page.locator("#heatmap")
    assert heatmap.is_visible()
    assert page.evaluate("document.getElementById('heatmap').naturalWidth") == 256
    assert page.locator("ol.top li").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webapp-{name}.png"), full_page=True)
    assert not errors, errors  # no CSP violations or script errors
    context.close()
