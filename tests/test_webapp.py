"""Flask test-client tests: every route, and every kind of bad input a client can send."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from webapp import create_app

from conftest import pattern, png

CLASSES = ["cat", "crème brûlée", "dog"]
# Detector thresholds that make the verdict certain: every score is above the first (every
# image known) and below the second (every image "none of these"). The fixture's own
# detector is fitted on its 24 training patterns alone, so it rejects most other images.
ACCEPT_ALL, REJECT_ALL = -1e30, 1e30


def model_copy(model_dir: Path, dest: Path, threshold: float | None = None, **card) -> Path:
    """model_dir's model in `dest`, with another detector threshold and model.json fields."""
    shutil.copytree(model_dir, dest)
    raw = json.loads((dest / "model.json").read_text(encoding="utf-8"))
    if threshold is not None:
        raw["ood"]["threshold"] = threshold
    raw.update(card)
    (dest / "model.json").write_text(json.dumps(raw), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def app(model_dir, tmp_path_factory):
    """Every image known, so that these tests of everything else get a class each time."""
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    params.write_text(
        "serve:\n  max_upload_mb: 1\n  max_files: 4\n  max_explain_files: 2\n"
        "image:\n  max_pixels: 1000000\n"
    )
    known = model_copy(model_dir, tmp_path_factory.mktemp("known") / "model", ACCEPT_ALL)
    return create_app(model_dir=known, params_file=params)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(autouse=True)
def _no_database_from_the_environment(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)


@pytest.fixture(scope="module")
def real(model_dir, tmp_path_factory):
    """The fixture model with its own detector, as export fitted it."""
    params = tmp_path_factory.mktemp("real") / "params.yaml"
    params.write_text("serve:\n  database: ''\n")
    return create_app(model_dir=model_dir, params_file=params).test_client()


def verdict_client(model_dir, tmp_path, threshold, serve=""):
    params = tmp_path / "params.yaml"
    params.write_text(
        f"image:\n  max_pixels: 1000000\nserve:\n  database: {tmp_path / 'app.sqlite'}\n{serve}"
    )
    model = model_copy(model_dir, tmp_path / "model", threshold)
    return create_app(model_dir=model, params_file=params).test_client()


def post_images(client, *files, url="/api/v1/predict"):
    data = {"image": [(io.BytesIO(body), name) for name, body in files]}
    return client.post(url, data=data, content_type="multipart/form-data")


def image_bytes(label=0, i=0, fmt="PNG"):
    return png(pattern(label, i).convert("RGB") if fmt == "JPEG" else pattern(label, i), fmt)


# ---- routes -------------------------------------------------------------------------------


def test_health_ready_and_model(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    model = client.get("/api/v1/model").json
    assert model["classes"] == CLASSES and model["input"]["size"] == 12
    assert model["top_k"] == 3 and "version" in model


def test_predict_one_and_many(client):
    one = post_images(client, ("a.png", image_bytes(0)))
    assert one.status_code == 200
    body = one.json
    assert set(body) == {"model_version", "predictions"}
    pred = body["predictions"][0]
    # The fixture model's classes are where pattern() draws its bar: 0 cat, 1 dog, 2 crème brûlée.
    assert pred["label"] == "cat" and pred["filename"] == "a.png"
    probs = [t["probability"] for t in pred["top"]]
    assert probs == sorted(probs, reverse=True) and len(probs) == 3
    many = post_images(client, ("a.png", image_bytes(0)), ("b.jpg", image_bytes(1, fmt="JPEG")))
    assert [(p["filename"], p["label"]) for p in many.json["predictions"]] == [
        ("a.png", "cat"),
        ("b.jpg", "dog"),
    ]


def test_explain_is_limited_to_max_explain_files(client):
    files = [(f"{i}.png", image_bytes(0, i)) for i in range(3)]
    assert post_images(client, *files).status_code == 200  # 3 <= max_files
    res = post_images(client, *files, url="/api/v1/predict?explain=true")
    assert res.status_code == 400
    assert res.json["error"]["message"] == (
        "too many files: 3 (at most 2 per request with explain=true)"
    )
    assert post_images(client, *files[:2], url="/api/v1/predict?explain=true").status_code == 200


def patch_image(rows: slice, cols: slice) -> bytes:
    """A bright noisy image with one dark patch: the fixture model reads a dark mark's columns
    as the class (6 to 8: crème brûlée), and with no mark at all says cat."""
    arr = np.random.default_rng(0).integers(200, 256, (12, 12)).astype(np.uint8)
    arr[rows, cols] = 20
    return png(Image.fromarray(arr, "L"))


def overlay_heat(overlay: bytes, upload: bytes) -> np.ndarray:
    """The heat map under an explain overlay, read back: the overlay is the preview (the upload
    at the display size) and the ramp's colour of the heat, half and half; each pixel's heat is
    the level whose ramp colour is nearest to what is left once the preview is taken away."""
    from image_classifier.preprocessing import decode_pixels
    from webapp.saliency import colorize
    from webapp.service import DISPLAY_SIZE

    shown = np.asarray(Image.open(io.BytesIO(overlay)).convert("RGB"), np.float32)
    display = decode_pixels(upload, DISPLAY_SIZE, "rgb").astype(np.float32)
    colours = 2 * shown - display
    levels = np.linspace(0, 1, 101)
    ramp = colorize(levels[np.newaxis])[0].astype(np.float32)
    distances = np.stack([((colours - c) ** 2).sum(axis=-1) for c in ramp])
    return levels[distances.argmin(axis=0)]


# The heat map of patch_image((5..7), (6..8)) read back: 0.83 on the patch on average, at
# most 0.02 beyond one pixel around it.
HOT, COOL = 0.6, 0.1


def test_explain_heatmap_peaks_on_the_evidence_for_the_class(client):
    """A dark patch in the middle of a bright image is what makes it crème brûlée (without it
    the answer is cat): the heat map is hottest on the patch and cool away from it."""
    from webapp.service import DISPLAY_SIZE

    rows, cols = slice(5, 8), slice(6, 9)
    without = post_images(client, ("none.png", patch_image(rows, slice(0, 0)))).json
    assert without["predictions"][0]["label"] == "cat"
    data = patch_image(rows, cols)
    body = post_images(client, ("a.png", data), url="/api/v1/predict?explain=true").json
    pred = body["predictions"][0]
    assert pred["label"] == "crème brûlée"
    heatmap = pred["heatmap"]
    assert heatmap.startswith("data:image/png;base64,")
    overlay = base64.b64decode(heatmap.split(",", 1)[1])
    assert Image.open(io.BytesIO(overlay)).size == (DISPLAY_SIZE, DISPLAY_SIZE)
    heat = overlay_heat(overlay, data)
    scale = DISPLAY_SIZE // 12
    patch = np.zeros_like(heat, dtype=bool)
    patch[rows.start * scale : rows.stop * scale, cols.start * scale : cols.stop * scale] = True
    # Beyond one input pixel around the patch: the overlay is scaled up bilinearly.
    away = np.ones_like(heat, dtype=bool)
    away[(rows.start - 1) * scale : (rows.stop + 1) * scale,
         (cols.start - 1) * scale : (cols.stop + 1) * scale] = False  # fmt: skip
    peak = np.unravel_index(heat.argmax(), heat.shape)
    assert patch[peak], peak
    assert heat[patch].mean() >= HOT and heat[away].max() <= COOL, (
        heat[patch].mean(),
        heat[away].max(),
    )


def test_kserve_v1_shape(client):
    b64 = base64.b64encode(image_bytes(2)).decode()
    res = client.post("/v1/models/image-classifier:predict", json={"instances": [{"b64": b64}] * 2})
    assert res.status_code == 200
    preds = res.json["predictions"]
    assert len(preds) == 2
    assert set(preds[0]) == {"probabilities", "label", "known", "ood_score"}
    probs = preds[0]["probabilities"]
    assert len(probs) == 3 and abs(sum(probs) - 1) < 1e-4
    assert preds[0]["label"] == CLASSES[int(np.argmax(probs))] and preds[0]["known"] is True
    assert isinstance(preds[0]["ood_score"], float)
    assert client.get("/v1/models/image-classifier").json["ready"] is True
    assert client.post("/v1/models/other:predict", json={"instances": []}).status_code == 404


def test_api_matches_direct_inference(client, model_dir):
    from image_classifier.litert.classifier import Classifier

    clf = Classifier.from_dir(model_dir)
    data = image_bytes(1, 7)
    out = clf.run(clf.preprocess(data)[np.newaxis])
    expected = out.probabilities[0]
    got = post_images(client, ("x.png", data)).json["predictions"][0]
    assert got["label"] == CLASSES[int(expected.argmax())]
    assert got["confidence"] == pytest.approx(float(expected.max()), abs=1e-6)
    assert got["ood_score"] == pytest.approx(float(out.scores[0]))  # the same one inference


def test_openapi_document(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/predict" in spec["paths"]


def metric_value(client, name: str, **labels: str) -> float:
    """The sum of /metrics' samples `name` whose labels include `labels` (0 before the first)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_metrics_count_requests_and_predictions(client):
    version = client.get("/api/v1/model").json["version"]
    counters = {
        "requests": ("http_requests_total", {"route": "/api/v1/predict", "status": "200"}),
        "cats": ("predictions_total", {"label": "cat", "model_version": version}),
        "dogs": ("predictions_total", {"label": "dog", "model_version": version}),
        "confidences": ("prediction_confidence_count", {"model_version": version}),
    }

    def read() -> dict[str, float]:
        return {
            key: metric_value(client, name, **labels) for key, (name, labels) in counters.items()
        }

    before = read()
    for i in range(3):  # three requests of a cat and a dog each
        post_images(client, ("a.png", image_bytes(0, i)), ("b.png", image_bytes(1, i)))
    after = read()
    grown = {key: after[key] - before[key] for key in counters}
    assert grown == {"requests": 3, "cats": 3, "dogs": 3, "confidences": 6}, grown


def test_one_json_log_line_per_request(client, caplog):
    with caplog.at_level("INFO", logger="webapp.access"):
        post_images(client, ("a.png", image_bytes(0)))
    lines = [json.loads(r.message) for r in caplog.records if r.name == "webapp.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line["path"] == "/api/v1/predict" and line["status"] == 200
    assert line["label"] == ["cat"] and 0 <= line["confidence"][0] <= 1
    assert line["known"] == [True]
    assert "latency_ms" in line and "image" not in line


def test_a_bug_while_decoding_an_upload_is_a_500_with_its_traceback(client, caplog, monkeypatch):
    """Not a 422 'bad image': the user's file is fine, our code is not."""
    from image_classifier import preprocessing

    def broken(img, color_mode):
        raise TypeError("a bug in _normalise_mode")

    monkeypatch.setattr(preprocessing, "_normalise_mode", broken)
    with caplog.at_level("ERROR", logger="webapp"):
        res = post_images(client, ("a.png", image_bytes(0)))
    assert res.status_code == 500 and res.json["error"]["message"] == "internal error"
    failures = [r for r in caplog.records if r.exc_info and r.levelname == "ERROR"]
    assert len(failures) == 1 and failures[0].exc_info[0] is TypeError
    assert "a bug in _normalise_mode" in str(failures[0].exc_info[1])


def test_debug_mode_is_off(app):
    assert not app.debug and not app.testing


def test_security_headers(client):
    res = client.get("/")
    assert "frame-ancestors 'none'" in res.headers["Content-Security-Policy"]
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in res.headers  # nothing to protect with a cookie


def test_proxy_fix_trusts_heroku_router(client):
    res = client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in res.headers


# ---- the page -----------------------------------------------------------------------------


def test_page_shows_model_and_form(client):
    html = client.get("/").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and "crème brûlée" in html
    assert "Model version" in html


def test_form_post_without_javascript(client):
    data = {"image": (io.BytesIO(image_bytes(2)), "<script>x</script>.png")}
    res = client.post("/", data=data, content_type="multipart/form-data")
    html = res.get_data(as_text=True)
    assert res.status_code == 200
    assert 'id="label"' in html and 'id="heatmap"' in html and "<meter" in html
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("path", ["/", "/api/v1/predict"])
def test_cross_site_browser_posts_are_refused(client, path):
    def post(**headers):
        data = {"image": (io.BytesIO(image_bytes(0)), "a.png")}
        return client.post(path, data=data, content_type="multipart/form-data", headers=headers)

    assert post(**{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert post(Origin="https://evil.example").status_code == 403
    assert post(Origin="null").status_code == 403  # an older browser, from a sandboxed frame
    for unreadable in ("http://[::1", "http://[abc]", "https://]"):  # urlsplit refuses these
        assert post(Origin=unreadable).status_code == 403
    # The page's own posts, and programs (which send neither header), go through; over plain
    # HTTP browsers send no Sec-Fetch-Site, only Origin (a real one under our Referrer-Policy).
    assert post(**{"Sec-Fetch-Site": "same-origin"}, Origin="http://localhost").status_code == 200
    assert post(**{"Sec-Fetch-Site": "same-origin"}, Origin="null").status_code == 200
    assert post(Origin="http://localhost").status_code == 200
    assert client.get("/").headers["Referrer-Policy"] == "same-origin"
    assert post().status_code == 200


def test_forwarded_host_is_not_trusted_by_default(client):
    """Heroku's router sets X-Forwarded-For and -Proto; a client-sent X-Forwarded-Host must not
    change the host the app believes it serves (here: pass the Origin check for evil.example)."""
    data = {"image": (io.BytesIO(image_bytes(0)), "a.png")}
    headers = {"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example"}
    headers["X-Forwarded-Proto"] = "https"
    res = client.post("/api/v1/predict", data=data, headers=headers)
    assert res.status_code == 403


@pytest.mark.parametrize(("threshold", "unsure"), [(ACCEPT_ALL, True), (REJECT_ALL, False)])
def test_unsure_predictions_say_so(model_dir, tmp_path, threshold, unsure):
    """A known image whose top probability is below serve.unsure_threshold (a temperature of
    1000 flattens every answer to about 1/3) is unsure; an unknown one has no answer to be
    unsure of."""
    params = tmp_path / "params.yaml"
    params.write_text("serve:\n  unsure_threshold: 0.6\n  database: ''\n")
    model = model_copy(model_dir, tmp_path / "model", threshold, calibration={"temperature": 1e3})
    client = create_app(model_dir=model, params_file=params).test_client()
    data = {"image": (io.BytesIO(image_bytes(0)), "a.png")}
    html = client.post("/", data=data, content_type="multipart/form-data").get_data(as_text=True)
    assert ("The model is unsure" in html) is unsure
    assert post_images(client, ("a.png", image_bytes(0))).json["predictions"][0]["unsure"] is unsure


def test_missing_model_is_alive_but_not_ready(tmp_path, default_params):
    client = create_app(model_dir=tmp_path, params_file=default_params).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    res = post_images(client, ("a.png", image_bytes(0)))
    assert res.status_code == 503 and "dvc repro" in res.json["error"]["message"]
    assert "not loaded" in client.get("/").get_data(as_text=True)


# ---- bad input ------------------------------------------------------------------------------


def bomb() -> bytes:
    return png(Image.new("1", (2000, 1000)))  # 2 M pixels, over the 1 M limit; a few KB


def truncated() -> bytes:
    return png(Image.effect_noise((64, 64), 50).convert("RGB"))[:300]


def animated_gif() -> bytes:
    buf = io.BytesIO()
    frames = [pattern(0, 0).convert("P"), pattern(1, 0).convert("P")]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def cmyk_jpeg() -> bytes:
    return png(pattern(0, 0).convert("RGB").convert("CMYK"), "JPEG")


def png16() -> bytes:
    return png(Image.fromarray(np.asarray(pattern(1, 0), dtype=np.uint16) * 257))


@pytest.mark.parametrize(
    ("name", "body", "status", "message"),
    [
        ("empty.png", b"", 400, "is empty"),
        ("notes.txt", b"just some text", 422, "not an image"),
        ("half.png", truncated(), 422, "truncated"),
        ("bomb.png", bomb(), 413, "over the limit"),
        ("../../x", b"just some text", 422, "not an image"),
    ],
)
def test_bad_files_get_a_clear_4xx(client, name, body, status, message):
    res = post_images(client, (name, body))
    assert res.status_code == status
    assert message in res.json["error"]["message"]


@pytest.mark.parametrize(
    ("body", "label"), [(animated_gif(), "cat"), (cmyk_jpeg(), "cat"), (png16(), "dog")]
)
def test_unusual_but_valid_images_work(client, real, body, label):
    """Decoded to the pattern they hold: an animated GIF's first frame, CMYK, 16 bits."""
    res = post_images(client, ("odd", body))
    assert res.status_code == 200 and res.json["predictions"][0]["label"] == label
    # With the fixture's own detector each gets a verdict too, never an error.
    res = post_images(real, ("odd", body))
    assert res.status_code == 200 and isinstance(res.json["predictions"][0]["known"], bool)


def test_no_file_and_too_many_files(client):
    assert client.post("/api/v1/predict").status_code == 400
    res = client.post("/api/v1/predict", data={"other": "x"}, content_type="multipart/form-data")
    assert res.status_code == 400 and "no image" in res.json["error"]["message"]
    res = post_images(client, *[("a.png", image_bytes(0))] * 5)
    assert res.status_code == 400 and "too many files" in res.json["error"]["message"]


def test_body_over_the_limit_is_413_json_and_page(client):
    big = b"\0" * (1024 * 1024 + 10)
    res = post_images(client, ("big.png", big))
    assert res.status_code == 413 and "limit is 1 MB" in res.json["error"]["message"]
    page = client.post("/", data={"image": (io.BytesIO(big), "big.png")})
    assert page.status_code == 413 and "upload too large" in page.get_data(as_text=True)


def test_page_errors_are_readable(client):
    data = {"image": (io.BytesIO(b"text"), "t.txt")}
    res = client.post("/", data=data, content_type="multipart/form-data")
    assert res.status_code == 422 and "not an image" in res.get_data(as_text=True)


def test_bad_kserve_bodies(client):
    url = "/v1/models/image-classifier:predict"
    assert client.post(url, data="nope", content_type="text/plain").status_code == 400
    assert client.post(url, json={"instances": [{"b64": "%%%"}]}).status_code == 400
    assert client.post(url, json={"instances": ["abc"]}).status_code == 400
    bad = base64.b64encode(b"text").decode()
    assert client.post(url, json={"instances": [{"b64": bad}]}).status_code == 422


def test_uploads_never_touch_disk(client, monkeypatch):
    import werkzeug.formparser

    def refuse(*args, **kwargs):
        raise AssertionError("upload spooled to disk")

    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(werkzeug.formparser, "TemporaryFile", refuse, raising=False)
    big = png(Image.effect_noise((480, 480), 80).convert("RGB"))  # > 500 KB, Werkzeug's spool size
    assert len(big) > 500 * 1024
    assert post_images(client, ("big.png", big)).status_code == 200


def test_unknown_routes_and_methods_are_json_4xx(client):
    assert client.get("/api/v1/nothing").json["error"]["status"] == 404
    assert client.get("/api/v1/predict").status_code == 405


def model_page(model_dir, reports_dir, monkeypatch, params):
    monkeypatch.setenv("REPORTS_DIR", str(reports_dir))
    return create_app(model_dir=model_dir, params_file=params).test_client()


def test_model_page_shows_the_evaluation(model_dir, reports_dir, monkeypatch, default_params):
    """Test metrics against both baselines, the per-class table and both figures."""
    client = model_page(model_dir, reports_dir, monkeypatch, default_params)
    page = client.get("/model").get_data(as_text=True)
    scores = json.loads((reports_dir / "metrics.json").read_text())
    assert 'id="report-problem"' not in page
    assert f"<td>{scores['accuracy']:.4f}</td>" in page
    assert f"<td>{scores['baseline_linear_accuracy']:.4f}</td>" in page
    assert page.count('<tr><th scope="row">') == 3 + 3  # headline metrics + classes
    assert "crème brûlée" in page
    for name in ("confusion", "misclassified"):
        figure = client.get(f"/model/{name}.png")
        assert figure.status_code == 200 and figure.data.startswith(b"\x89PNG")
    assert client.get("/model/metrics.png").status_code == 404
    assert client.get("/model/..%2Fmetrics.png").status_code == 404


def test_model_page_never_shows_another_models_reports(
    model_dir, reports_dir, tmp_path, monkeypatch, default_params
):
    """Reports left from another run say so instead of passing for the served model's."""
    import shutil

    stale = tmp_path / "reports"
    shutil.copytree(reports_dir, stale)
    (stale / "eval/evaluated_model.json").write_text('{"model_version": "0ld-model"}')
    client = model_page(model_dir, stale, monkeypatch, default_params)
    page = client.get("/model").get_data(as_text=True)
    assert "describe model 0ld-model, not the served model" in page
    assert 'id="headline"' not in page
    assert client.get("/model/confusion.png").status_code == 404
    missing = model_page(model_dir, tmp_path / "nowhere", monkeypatch, default_params).get("/model")
    assert missing.status_code == 200
    assert "no evaluation reports were deployed" in missing.get_data(as_text=True)


def test_model_page_gives_the_audit_counts_when_shipped(
    model_dir, reports_dir, tmp_path, monkeypatch, default_params
):
    import shutil

    shipped = tmp_path / "reports"
    shutil.copytree(reports_dir, shipped)
    (shipped / "audit/summary.json").unlink()
    assert 'id="audit"' not in model_page(model_dir, shipped, monkeypatch, default_params).get(
        "/model"
    ).get_data(as_text=True)
    (shipped / "audit/summary.json").write_text(
        json.dumps({"images": 1528, "label_issues": 5, "outliers": 1, "too_small": None})
    )
    page = (
        model_page(model_dir, shipped, monkeypatch, default_params)
        .get("/model")
        .get_data(as_text=True)
    )
    assert "audit of its 1528 training and validation images found 5 suspected label issues" in page
    assert "and 1 outlier (see" in page


# ---- "none of these" -------------------------------------------------------------------------


def blank(value: int = 255) -> bytes:
    return png(Image.new("L", (12, 12), value))


def noise() -> bytes:
    rng = np.random.default_rng(7)
    return png(Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), "RGB"))


def test_a_rejected_upload_says_none_of_these_with_its_score_and_closest_classes(
    model_dir, tmp_path
):
    """Every image under the threshold: no label, no confidence, no `top`; its score and
    the closest classes under `closest`; the same on the KServe route and the page."""
    client = verdict_client(model_dir, tmp_path, REJECT_ALL, "  unsure_threshold: 1.0\n")
    pred = post_images(client, ("a.png", image_bytes(0))).json["predictions"][0]
    assert pred["known"] is False and pred["label"] is None and pred["confidence"] is None
    assert pred["unsure"] is False  # unsure is for known images only
    assert "top" not in pred and isinstance(pred["ood_score"], float)
    closest = pred["closest"]
    names = [c["label"] for c in closest]
    assert names[0] == "cat" and sorted(names) == CLASSES
    probs = [c["probability"] for c in closest]
    assert probs == sorted(probs, reverse=True)

    b64 = base64.b64encode(image_bytes(0)).decode()
    res = client.post("/v1/models/image-classifier:predict", json={"instances": [{"b64": b64}]})
    (item,) = res.json["predictions"]
    assert item["known"] is False and item["label"] is None
    assert item["ood_score"] == pytest.approx(pred["ood_score"])
    assert item["closest"] == closest and len(item["probabilities"]) == 3

    page = client.post("/", data={"image": (io.BytesIO(image_bytes(0)), "a.png")})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "This doesn't look like any of: cat, crème brûlée, dog." in html
    assert '<h2 id="label" class="none">None of these</h2>' in html
    assert "Closest classes, not an answer" in html and '<ol class="top closest">' in html
    assert "The model is unsure" not in html


def test_a_known_upload_has_a_label_and_no_closest(model_dir, tmp_path):
    from image_classifier.litert.classifier import Classifier

    clf = Classifier.from_dir(model_dir)
    expected = CLASSES[int(clf.predict(clf.preprocess(blank())[np.newaxis])[0].argmax())]
    client = verdict_client(model_dir, tmp_path, ACCEPT_ALL)
    pred = post_images(client, ("w.png", blank())).json["predictions"][0]
    assert pred["known"] is True and pred["label"] == expected and "closest" not in pred
    assert pred["confidence"] == pred["top"][0]["probability"]
    html = client.post("/", data={"image": (io.BytesIO(blank()), "w.png")}).get_data(as_text=True)
    assert "look like any of" not in html and 'class="none"' not in html


def test_blank_and_noise_images_are_none_of_these_for_the_fixture_model(real, model_dir):
    """The fixture's own detector, unchanged: blank and noise images score far below its
    threshold, the model's example images (export keeps known ones) at or above it, as
    Classifier.run computes it."""
    from image_classifier.litert.classifier import Classifier

    clf = Classifier.from_dir(model_dir)
    model = real.get("/api/v1/model").json
    threshold = model["ood"]["threshold"]
    assert model["ood"]["method"] == clf.detector.method and threshold == clf.detector.threshold
    assert model["temperature"] == pytest.approx(clf.card.temperature)
    examples = sorted((model_dir / "examples").glob("*.png"))
    files = [("white.png", blank(255)), ("black.png", blank(0)), ("noise.png", noise())]
    files += [(p.name, p.read_bytes()) for p in examples]
    preds = post_images(real, *files).json["predictions"]
    # One batch, as the app runs it (LiteRT's sums differ a little with the batch size).
    expected = clf.run(np.stack([clf.preprocess(data) for _, data in files]))
    for (name, _), pred, score, known in zip(
        files, preds, expected.scores, expected.known, strict=True
    ):
        assert pred["ood_score"] == pytest.approx(float(score), rel=1e-6), name
        assert pred["known"] is bool(known), name
    assert [p["known"] for p in preds] == [False] * 3 + [True] * len(examples)
    assert all(p["ood_score"] < threshold for p in preds[:3])
    assert all(p["label"] is None and len(p["closest"]) == 3 for p in preds[:3])


@pytest.mark.parametrize("threshold", [ACCEPT_ALL, REJECT_ALL])
@pytest.mark.parametrize(
    ("body", "status"), [(b"", 400), (b"just some text", 422), (truncated(), 422), (bomb(), 413)]
)
def test_bad_input_stays_an_error_whatever_the_detector(
    model_dir, tmp_path, threshold, body, status
):
    """The score never turns an error into a guess: a bad file, alone or beside a good one,
    gets its 4xx and no prediction, on the API, the KServe route and the page."""
    client = verdict_client(model_dir, tmp_path, threshold)
    res = post_images(client, ("good.png", image_bytes(0)), ("bad.png", body))
    assert res.status_code == status and set(res.json) == {"error"}
    assert "file 2 (bad.png)" in res.json["error"]["message"] or status == 400
    if body:
        instances = [{"b64": base64.b64encode(body).decode()}]
        kserve = client.post("/v1/models/image-classifier:predict", json={"instances": instances})
        assert kserve.status_code == status and "predictions" not in kserve.json
    page = client.post("/", data={"image": (io.BytesIO(body), "bad.png")})
    assert page.status_code == status and 'id="label"' not in page.get_data(as_text=True)
    assert client.get("/api/v1/drift").json["profile"]["total"] == 0


def test_unknown_predictions_are_counted_in_metrics_and_the_log(model_dir, tmp_path, caplog):
    client = verdict_client(model_dir, tmp_path, REJECT_ALL)

    def unknown_total() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        version = client.get("/api/v1/model").json["version"]
        line = f'unknown_predictions_total{{model_version="{version}"}} '
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

    before = unknown_total()
    with caplog.at_level("INFO", logger="webapp.access"):
        post_images(client, ("a.png", image_bytes(0)), ("b.png", image_bytes(1)))
    assert unknown_total() - before == 2
    lines = [json.loads(r.message) for r in caplog.records if r.name == "webapp.access"]
    (line,) = [line for line in lines if line["path"] == "/api/v1/predict"]
    assert line["known"] == [False, False] and line["label"] == ["cat", "dog"]


def test_the_page_says_what_images_the_model_expects(client):
    html = client.get("/").get_data(as_text=True)
    assert "It tells 3 classes apart: cat, crème brûlée, dog." in html
    assert "one object per image" in html
    assert "squared to 12×12 pixels in grayscale" in html


# ---- try it in one click -------------------------------------------------------------------


def test_the_page_offers_the_example_images_and_one_click_classifies_one(model_dir, tmp_path):
    """Each example of model.json is a thumbnail in its own small form; posting it
    classifies the file the export stage wrote, as an upload of it would."""
    client = verdict_client(model_dir, tmp_path, None)  # the fixture's own detector
    examples = json.loads((model_dir / "model.json").read_text())["examples"]
    assert len(examples) == 3
    html = client.get("/").get_data(as_text=True)
    for i, example in enumerate(examples):
        assert f'<form method="post" action="/example/{i}#result">' in html
        assert f'<img src="/example/{i}.png" alt="example: {example["label"]}"' in html
        thumb = client.get(f"/example/{i}.png")
        assert thumb.status_code == 200 and thumb.mimetype == "image/png"
        assert thumb.data == (model_dir / example["file"]).read_bytes()
        page = client.post(f"/example/{i}")
        shown = page.get_data(as_text=True)
        assert page.status_code == 200, shown
        # export ships examples the model gets right and calls known
        assert f'<h2 id="label">{example["label"]} <small>' in shown
        assert f"Example: a test image labelled {example['label']}" in shown
        assert 'id="heatmap"' in shown and 'id="feedback"' not in shown
        upload = post_images(client, ("x.png", thumb.data)).json["predictions"][0]
        assert upload["label"] == example["label"] and upload["known"] is True
    # Clicks on examples are not traffic: the drift counts hold only the 3 uploads.
    assert client.get("/api/v1/drift").json["profile"]["total"] == 3


@pytest.mark.parametrize(
    "path", ["/example/3", "/example/-1", "/example/abc", "/example/..%2Fmodel.json", "/example/"]
)
def test_an_example_index_that_does_not_exist_is_404(client, path):
    assert client.post(path).status_code == 404
    assert client.get(path + ".png").status_code == 404


def test_examples_are_read_by_index_only(client, app):
    assert client.get("/example/0").status_code == 405  # classifying is a POST, like uploads
    res = client.post("/example/0", data={"path": "/etc/passwd", "file": "../model.json"})
    assert res.status_code == 200 and "root:" not in res.get_data(as_text=True)
    state = app.extensions["model_state"]
    assert [e.path.parent.name for e in state.examples] == ["examples"] * 3
    assert client.post("/example/0", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403


def test_model_json_examples_outside_the_examples_folder_are_left_out(
    model_dir, tmp_path, default_params
):
    examples = [
        {"file": "model.json", "label": "cat"},
        {"file": "examples/../model.tflite", "label": "cat"},
        {"file": "/etc/hostname", "label": "cat"},
        {"file": "examples\\..\\model.json", "label": "cat"},
        {"file": "examples/..", "label": "cat"},
        {"file": "examples", "label": "cat"},
        {"file": "examples/000.png", "label": "not a class"},
        {"file": "examples/404.png", "label": "cat"},
        {"file": 3, "label": "cat"},
        "examples/000.png",
        {"file": "examples/002.png", "label": "dog"},
    ]
    model = model_copy(model_dir, tmp_path / "model", examples=examples)
    client = create_app(model_dir=model, params_file=default_params).test_client()
    html = client.get("/").get_data(as_text=True)
    assert html.count('action="/example/') == 1 and 'alt="example: dog"' in html
    assert client.get("/example/0.png").data == (model / "examples/002.png").read_bytes()
    assert client.post("/example/1").status_code == 404
    no_examples = model_copy(model_dir, tmp_path / "bare", examples=None)
    html = create_app(model_dir=no_examples, params_file=default_params).test_client().get("/")
    assert 'id="examples"' not in html.get_data(as_text=True)


def test_examples_need_the_model(tmp_path, default_params):
    client = create_app(model_dir=tmp_path, params_file=default_params).test_client()
    assert client.post("/example/0").status_code == 503
    assert 'id="examples"' not in client.get("/").get_data(as_text=True)


# ---- the model card on /model --------------------------------------------------------------


def test_model_page_shows_the_model_card_and_how_the_model_is_served(
    model_dir, reports_dir, monkeypatch, default_params, tmp_path
):
    client = model_page(model_dir, reports_dir, monkeypatch, default_params)
    page = client.get("/model").get_data(as_text=True)
    card = json.loads((model_dir / "model.json").read_text())
    assert f"<h2>Model card: image classifier <code>{card['version']}</code></h2>" in page
    assert '<section id="model-card" class="model-card">' in page
    assert "<h3>Out-of-distribution behaviour</h3>" in page and "<table><thead><tr><th>" in page
    assert "pipeline_tag" not in page  # the front matter is metadata for the Hub
    served = page.split('id="served-as">', 1)[1].split("</p>", 1)[0]
    assert f"temperature {card['calibration']['temperature']:.3g}" in served
    assert card["ood"]["method"] in served and f"{card['ood']['threshold']:.4g}" in served
    assert "accept at least 95% of images like them (90% confidence)" in served
    # A model whose threshold is exactly ood.accept of the validation images says so.
    exact = tmp_path / "exact"
    shutil.copytree(model_dir, exact)
    card["ood"]["confidence"] = None
    (exact / "model.json").write_text(json.dumps(card))
    page = model_page(exact, reports_dir, monkeypatch, default_params).get("/model")
    served = page.get_data(as_text=True).split('id="served-as">', 1)[1].split("</p>", 1)[0]
    assert "set on the validation images to accept 95% of them" in served


def test_model_card_is_escaped_and_shown_only_for_the_served_model(
    model_dir, reports_dir, tmp_path, monkeypatch, default_params
):
    version = json.loads((model_dir / "model.json").read_text())["version"]
    shipped = tmp_path / "reports"
    shutil.copytree(reports_dir, shipped)
    hostile = (
        f"# Card for `{version}` <script>alert(1)</script>\n\n"
        '<img src=x onerror="alert(2)"> [click](javascript:alert(3)) '
        "[docs](https://example.com/?a=1&b=2) ![cm](eval/confusion.png)\n\n"
        "| class <b>x</b> | n |\n|---|--:|\n| cat | 3 |\n"
    )
    (shipped / "model_card.md").write_text(hostile, encoding="utf-8")
    page = model_page(model_dir, shipped, monkeypatch, default_params).get("/model")
    html = page.get_data(as_text=True)
    card = html.split('id="model-card"', 1)[1].split("</section>", 1)[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in card and "<script" not in card
    assert "&lt;img src=x onerror=" in card and "<img src=x" not in card
    assert "javascript" not in card and "click" in card  # the text stays, the link goes
    assert '<a href="https://example.com/?a=1&amp;b=2" rel="nofollow noopener noreferrer">' in card
    assert '<img src="model/confusion.png" alt="cm">' in card
    assert '<th>class &lt;b&gt;x&lt;/b&gt;</th><th class="right">n</th>' in card
    (shipped / "model_card.md").write_text("# Card for model 0ld-model\n", encoding="utf-8")
    html = model_page(model_dir, shipped, monkeypatch, default_params).get("/model")
    assert 'id="model-card"' not in html.get_data(as_text=True)


def test_json_nested_too_deeply_is_a_400_not_a_500(client):
    deep = b"[" * 5000 + b"]" * 5000  # Python's json recursion gives up near a thousand
    url = "/v1/models/image-classifier:predict"
    r = client.post(url, data=deep, content_type="application/json")
    assert r.status_code == 400 and "nested too deeply" in r.json["error"]["message"]


def test_a_float_image_with_a_nan_pixel_is_refused_not_guessed_as_black(client):
    pixels = np.full((30, 40), 100.0, dtype=np.float32)
    pixels[0, 0] = np.nan
    buf = io.BytesIO()
    Image.fromarray(pixels, "F").save(buf, "TIFF")
    r = post_images(client, ("nan.tif", buf.getvalue()))
    assert r.status_code == 422 and "NaN or infinite" in r.json["error"]["message"]


def test_too_many_form_parts_says_so_not_that_the_upload_is_too_large(client):
    fields = {f"f{i}": "x" for i in range(1001)}  # Werkzeug's limit: 1,000 parts
    r = client.post("/api/v1/predict", data=fields, content_type="multipart/form-data")
    assert r.status_code == 413
    assert r.json["error"]["message"] == "too many parts in the form: the limit is 1000"
