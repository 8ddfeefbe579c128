"""Real browser: headless Chromium (Debian's package) driven by Playwright.

Screenshots land in test-artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
from playwright import sync_api

from image_classifier import sample_data, synthetic
from image_classifier.params import load_params
from webapp import create_app

from conftest import live_server, pattern, png
from fork import write_params
from helpers import stages

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(model_dir, default_params, tmp_path_factory):
    """Every image known (the fixture's detector, fitted on its 24 training patterns alone,
    rejects the resized upload below): this page shows a class."""
    known = tmp_path_factory.mktemp("known") / "model"
    shutil.copytree(model_dir, known)
    card = json.loads((known / "model.json").read_text())
    card["ood"]["threshold"] = -1e30
    (known / "model.json").write_text(json.dumps(card))
    with live_server(create_app(model_dir=known, params_file=default_params)) as url:
        yield url


@pytest.fixture(scope="module")
def real_url(model_dir, default_params):
    """The fixture model with its own detector."""
    with live_server(create_app(model_dir=model_dir, params_file=default_params)) as url:
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
    assert label.startswith("crème brûlée")  # pattern 2 is the fixture model's crème brûlée
    heatmap = page.locator("#heatmap")
    assert heatmap.is_visible()
    assert page.evaluate("document.getElementById('heatmap').naturalWidth") == 256
    assert page.locator("ol.top li").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webapp-{name}.png"), full_page=True)
    assert not errors, errors  # no CSP violations or script errors
    context.close()


@pytest.mark.parametrize("javascript", [True, False])
def test_an_image_like_none_of_the_classes_says_so(browser, real_url, tmp_path, javascript):
    """A blank image against the fixture's own detector: "None of these", the sentence that
    names the classes, and the closest classes shown as closest."""
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 150), "white").save(blank)
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(real_url)
    assert "one object per image" in page.inner_text("#expects")
    page.set_input_files("#image", str(blank))
    page.click("#upload button[type=submit]")
    page.wait_for_selector("#label", timeout=15_000)
    assert page.inner_text("#label") == "None of these"
    assert page.inner_text("#unknown") == ("This doesn't look like any of: cat, crème brûlée, dog.")
    assert page.locator("ol.top.closest li").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(
        path=str(ARTIFACTS / f"webapp-none-of-these-js-{javascript}.png"), full_page=True
    )
    assert not errors, errors
    context.close()


@pytest.mark.parametrize("javascript", [True, False])
def test_one_click_on_an_example_classifies_it(browser, real_url, model_dir, javascript):
    """The examples export shipped, as thumbnails; a click shows the model's answer for it
    (with JavaScript in place, without by a plain form post)."""
    examples = json.loads((model_dir / "model.json").read_text())["examples"]
    context = browser.new_context(
        viewport={"width": 1024, "height": 900}, java_script_enabled=javascript
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(real_url)
    thumbs = page.locator("#examples img")
    assert thumbs.count() == len(examples) == 3
    for i in range(thumbs.count()):
        thumbs.nth(i).scroll_into_view_if_needed()
        page.wait_for_function(
            f"document.querySelectorAll('#examples img')[{i}].naturalWidth > 0", timeout=10_000
        )
    last = examples[-1]["label"]
    page.click(f"#examples li:nth-child({len(examples)}) button")
    page.wait_for_selector("#label", timeout=15_000)
    assert page.inner_text("#label").startswith(last)
    assert f"Example: a test image labelled {last}" in page.inner_text("#result")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webapp-example-js-{javascript}.png"), full_page=True)
    assert not errors, errors  # no CSP violations or script errors
    context.close()


# The model page for models the pipeline really made: the bundled digits with the repository's
# params, and a 224-px RGB MobileNetV2 on generated photos (random weights, one epoch: the page
# is under test, not the model).
PIPELINES = {
    "digits": ({}, None),
    "photos-224-rgb": (
        {
            "image": {"size": 224, "color_mode": "rgb"},
            "train": {
                "model": "mobilenet_v2",
                "weights": None,
                "epochs": 1,
                "min_steps": 0,
                "batch_size": 8,
            },
        },
        synthetic.Spec((14, 14, 14), seed=11, fmt="JPEG", scale=0.6),
    ),
}


def pipeline_workspace(root: Path, name: str) -> Path:
    overrides, spec = PIPELINES[name]
    raw = root / "data" / "raw"
    with contextlib.chdir(root):
        if spec is None:
            sample_data.write_sample(raw)
        else:
            synthetic.write_dataset(raw, spec, workers=1)
        params = load_params(write_params(Path("params.yaml"), overrides))
        for stage in stages():
            stage.run(params)
    return root


@pytest.mark.parametrize("name", list(PIPELINES))
def test_model_page_shows_a_pipeline_models_evaluation(browser, tmp_path, name):
    workspace = pipeline_workspace(tmp_path, name)
    app = create_app(  # reports/ beside the model, as deployed
        model_dir=workspace / "saved_models", params_file=workspace / "params.yaml"
    )
    with live_server(app) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{url}/model")
        page.wait_for_selector("#headline")
        assert page.locator("#report-problem").count() == 0
        # One epoch of random features on 42 images does not beat the linear baseline; the
        # page must say so. The digits model does, and gets no warning.
        warned = page.locator("#baseline-warning").count()
        assert warned == (0 if name == "digits" else 1)
        headline = page.locator("#headline tbody tr")
        assert headline.count() == 3
        assert "accuracy" in headline.first.inner_text()
        n_classes = len(app.extensions["model_state"].classifier.card.classes)
        assert page.locator("#classes tbody tr").count() == n_classes
        for figure in ("#confusion", "#mistakes"):
            page.locator(figure).scroll_into_view_if_needed()
            width = page.evaluate(f"document.querySelector('{figure}').naturalWidth")
            assert width > 100, figure
        # The evaluate stage's model card, for this model, below the report.
        version = app.extensions["model_state"].classifier.card.version
        assert version in page.inner_text("#model-card h2")
        assert page.locator("#model-card table").count() >= 3
        assert "none of these" in page.inner_text("#served-as")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"model-page-{name}.png"), full_page=True)
        assert not errors, errors
        context.close()


@pytest.mark.parametrize("javascript", [True, False])
def test_wrong_prediction_feedback_then_review(browser, model_dir, image, tmp_path, javascript):
    """A person says the result was wrong, in a real browser (with and without JavaScript);
    the reviewer then sees it on /review behind the token and accepts it."""
    params = tmp_path / "params.yaml"
    params.write_text(f"serve:\n  feedback: true\n  database: {tmp_path / 'app.sqlite'}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEEDBACK_TOKEN", "browser-token")
        mp.delenv("DATABASE_URL", raising=False)
        mp.delenv("DRIFT_DB", raising=False)
        app = create_app(model_dir=model_dir, params_file=params)
    with live_server(app) as url:
        context = browser.new_context(java_script_enabled=javascript)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(url)
        page.set_input_files("#image", str(image))
        page.click("#upload button[type=submit]")
        page.wait_for_selector("#label", timeout=15_000)
        page.click("#feedback summary")
        page.select_option("#feedback-label", "crème brûlée")
        page.click("#feedback button[type=submit]")
        page.wait_for_selector(".thanks", timeout=15_000)
        assert "saved for review as 'crème brûlée'" in page.inner_text(".thanks")
        assert not errors, errors
        context.close()

        reviewer = browser.new_context(
            http_credentials={"username": "me", "password": "browser-token"},
            java_script_enabled=javascript,
        )
        page = reviewer.new_page()
        page.goto(f"{url}/review")
        assert "1 pending" in page.inner_text("main")
        assert page.evaluate("document.querySelector('ul.review img').naturalWidth") == 128
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"review-js-{javascript}.png"), full_page=True)
        page.click("ul.review button[value=accept]")
        page.wait_for_selector("#empty")
        assert "0 pending · 1 accepted" in page.inner_text("main")
        reviewer.close()
