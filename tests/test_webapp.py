"""Flask test-client tests: every route, and every kind of bad input a client can send."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from webapp import create_app

from conftest import pattern, png

CLASSES = ["cat", "crème brûlée", "dog"]


@pytest.fixture(scope="module")
def app(model_dir, tmp_path_factory):
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    params.write_text(
        "serve:\n  max_upload_mb: 1\n  max_files: 4\n  max_explain_files: 2\n"
        "image:\n  max_pixels: 1000000\n"
    )
    return create_app(model_dir=model_dir, params_file=params)


@pytest.fixture
def client(app):
    return app.test_client()


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
    assert pred["label"] in CLASSES and pred["filename"] == "a.png"
    probs = [t["probability"] for t in pred["top"]]
    assert probs == sorted(probs, reverse=True) and len(probs) == 3
    many = post_images(client, ("a.png", image_bytes(0)), ("b.jpg", image_bytes(1, fmt="JPEG")))
    assert [p["filename"] for p in many.json["predictions"]] == ["a.png", "b.jpg"]


def test_explain_is_limited_to_max_explain_files(client):
    files = [(f"{i}.png", image_bytes(0, i)) for i in range(3)]
    assert post_images(client, *files).status_code == 200  # 3 <= max_files
    res = post_images(client, *files, url="/api/v1/predict?explain=true")
    assert res.status_code == 400
    assert res.json["error"]["message"] == (
        "too many files: 3 (at most 2 per request with explain=true)"
    )
    assert post_images(client, *files[:2], url="/api/v1/predict?explain=true").status_code == 200


def test_explain_adds_a_heatmap(client):
    body = post_images(client, ("a.png", image_bytes(0)), url="/api/v1/predict?explain=true").json
    heatmap = body["predictions"][0]["heatmap"]
    assert heatmap.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(heatmap.split(",", 1)[1])))
    assert img.size == (256, 256)


def test_kserve_v1_shape(client):
    b64 = base64.b64encode(image_bytes(2)).decode()
    res = client.post("/v1/models/image-classifier:predict", json={"instances": [{"b64": b64}] * 2})
    assert res.status_code == 200
    preds = res.json["predictions"]
    assert len(preds) == 2 and len(preds[0]) == 3
    assert abs(sum(preds[0]) - 1) < 1e-4
    assert client.get("/v1/models/image-classifier").json["ready"] is True
    assert client.post("/v1/models/other:predict", json={"instances": []}).status_code == 404


def test_api_matches_direct_inference(client, model_dir):
    from image_classifier.litert.classifier import Classifier

    clf = Classifier.from_dir(model_dir)
    data = image_bytes(1, 7)
    expected = clf.predict(clf.preprocess(data)[np.newaxis])[0]
    got = post_images(client, ("x.png", data)).json["predictions"][0]
    assert got["label"] == CLASSES[int(expected.argmax())]
    assert got["confidence"] == pytest.approx(float(expected.max()), abs=1e-6)


def test_openapi_document(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/predict" in spec["paths"]


def test_metrics_count_requests_and_predictions(client):
    post_images(client, ("a.png", image_bytes(0)))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="POST",route="/api/v1/predict",status="200"}' in text
    assert "predictions_total{" in text and "prediction_confidence_bucket{" in text


def test_one_json_log_line_per_request(client, caplog):
    with caplog.at_level("INFO", logger="webapp.access"):
        post_images(client, ("a.png", image_bytes(0)))
    lines = [json.loads(r.message) for r in caplog.records if r.name == "webapp.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line["path"] == "/api/v1/predict" and line["status"] == 200
    assert line["label"][0] in CLASSES and 0 <= line["confidence"][0] <= 1
    assert "latency_ms" in line and "image" not in line


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


def test_unsure_predictions_say_so(model_dir, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("serve:\n  unsure_threshold: 1.0\n")
    client = create_app(model_dir=model_dir, params_file=params).test_client()
    data = {"image": (io.BytesIO(image_bytes(0)), "a.png")}
    html = client.post("/", data=data, content_type="multipart/form-data").get_data(as_text=True)
    assert "The model is unsure" in html


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


@pytest.mark.parametrize("body", [animated_gif(), cmyk_jpeg(), png16()])
def test_unusual_but_valid_images_work(client, body):
    res = post_images(client, ("odd", body))
    assert res.status_code == 200 and res.json["predictions"][0]["label"] in CLASSES


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
