"""schemathesis (its CLI) against /openapi.json of a live server: no 5xx, no schema violation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from webapp import create_app

from conftest import live_server

pytestmark = pytest.mark.slow

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


TOKEN = "schema-token"


@pytest.fixture(scope="module")
def base_url(model_dir, tmp_path_factory):
    """Every route on: feedback, its review API (the token given below) and a database."""
    folder = tmp_path_factory.mktemp("schema")
    params = folder / "params.yaml"
    params.write_text(
        f"serve:\n  feedback: true\n  feedback_per_minute: 100000\n"
        f"  database: {folder / 'app.sqlite'}\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEEDBACK_TOKEN", TOKEN)
        mp.delenv("DATABASE_URL", raising=False)
        mp.delenv("DRIFT_DB", raising=False)
        app = create_app(model_dir=model_dir, params_file=params)
    with live_server(app) as url:
        yield url


def test_api_conforms_to_its_openapi_document(base_url, tmp_path):
    st = Path(sys.executable).parent / "schemathesis"
    cmd = [
        str(st),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "60",
        "--workers",
        "1",
        "--seed",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
        "--header",
        f"Authorization: Bearer {TOKEN}",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()


def test_known_and_unknown_answers_match_the_document(model_dir, tmp_path, monkeypatch):
    """Real answers, not fuzzed ones (which are mostly 4xx): a known and an unknown image on
    /api/v1/predict (with heat maps), the KServe route, the model, the drift counts and
    feedback, each checked against openapi.yaml, which would refuse a missing verdict."""
    import base64
    import io
    import json
    import shutil

    import requests
    import schemathesis
    import yaml
    from PIL import Image

    from conftest import pattern, png

    spec = yaml.safe_load((Path(__file__).parents[1] / "webapp/openapi.yaml").read_text())
    schema = schemathesis.openapi.from_dict(spec)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)
    images = [("a.png", png(pattern(0, 0))), ("blank.png", png(Image.new("L", (12, 12), 255)))]
    seen = set()
    for threshold in (-1e30, 1e30):  # every image known; every image "none of these"
        folder = tmp_path / str(threshold)
        shutil.copytree(model_dir, folder / "model")
        card = json.loads((folder / "model" / "model.json").read_text())
        card["ood"]["threshold"] = threshold
        (folder / "model" / "model.json").write_text(json.dumps(card))
        params = folder / "params.yaml"
        params.write_text(f"serve:\n  feedback: true\n  database: {folder / 'app.sqlite'}\n")
        client = create_app(model_dir=folder / "model", params_file=params).test_client()
        form = {"image": [(io.BytesIO(data), name) for name, data in images]}
        res = client.post("/api/v1/predict?explain=true", data=form)
        schema["/api/v1/predict"]["POST"].validate_response(res)
        seen |= {p["known"] for p in res.json["predictions"]}
        instances = [{"b64": base64.b64encode(data).decode()} for _, data in images]
        res = client.post("/v1/models/image-classifier:predict", json={"instances": instances})
        schema["/v1/models/{name}:predict"]["POST"].validate_response(res)
        schema["/api/v1/model"]["GET"].validate_response(client.get("/api/v1/model"))
        schema["/api/v1/drift"]["GET"].validate_response(client.get("/api/v1/drift"))
        body = {"image": (io.BytesIO(images[1][1]), "b.png"), "label": "cat"}
        res = client.post("/api/v1/feedback", data=body)
        assert res.status_code == 201
        schema["/api/v1/feedback"]["POST"].validate_response(res)
    assert seen == {True, False}
    # The check has teeth: a prediction without its verdict is refused.
    fake = requests.Response()
    fake.status_code, fake.headers["Content-Type"] = 200, "application/json"
    fake._content = json.dumps(
        {"model_version": "v", "predictions": [{"filename": "a", "label": None}]}
    ).encode()
    fake.request = requests.Request("POST", "http://localhost/api/v1/predict").prepare()
    with pytest.raises(BaseExceptionGroup) as refused:  # schemathesis' FailureGroup
        schema["/api/v1/predict"]["POST"].validate_response(fake)
    failures = refused.value.exceptions
    assert any("is a required property" in str(f) for f in failures), failures
