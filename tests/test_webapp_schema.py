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
        f"  drift_db: {folder / 'app.sqlite'}\n"
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
