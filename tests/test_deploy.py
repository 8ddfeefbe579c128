"""CI/CD and deployment files: workflows, Dockerfile and manifests pass their linters; the
Heroku bundle carries the model and runs on its own; the smoke check works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)


def test_workflows_match_the_github_schema():
    result = run(
        str(BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        *map(str, WORKFLOWS),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_zizmor():
    result = run(str(BIN / "zizmor"), "--offline", ".github/workflows")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint():
    result = run(str(BIN / "hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_actions_pinned_permissions_minimal_no_secrets_echoed():
    for path in WORKFLOWS:
        text = path.read_text()
        doc = yaml.safe_load(text)
        assert doc["permissions"] == {"contents": "read"}, path.name
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                uses = step.get("uses", "")
                if uses and not uses.startswith("$/"):
                    ref = uses.split("@", 1)[1]
                    assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), uses
                assert "secrets." not in step.get("run", ""), step  # only through env:
        assert "echo $HEROKU_API_KEY" not in text and "set -x" not in text


def test_ci_runs_tests_pipeline_and_diffs():
    ci = (ROOT / ".github/workflows/ci.yml").read_text()
    for needle in (
        "make test",
        "chromium",
        "dvc exp run -S",
        "dvc metrics diff",
        "dvc params diff",
        "GITHUB_STEP_SUMMARY",
        "python-version-file: .python-version",
        "cache: pip",
    ):
        assert needle in ci, needle
    deploy = (ROOT / ".github/workflows/deploy.yml").read_text()
    for needle in (
        "image_classifier.gate",
        "deploy/bundle.py",
        "deploy/smoke.py",
        "HEROKU_API_KEY",
    ):
        assert needle in deploy, needle


def test_kubernetes_manifests():
    docs = {
        d["kind"]: d
        for f in sorted((ROOT / "deploy/k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
    }
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"requests", "limits"} <= set(container["resources"])
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "image-classifier"
    assert docs["Service"]["spec"]["selector"] == {"app": "image-classifier"}


def test_bundle_carries_the_model_and_runs_alone(model_dir, tmp_path):
    fake_root = tmp_path / "repo"
    for name in ("Procfile", "requirements.txt", ".python-version", "params.yaml"):
        (fake_root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, fake_root / name)
    for tree in ("webapp", "src/image_classifier"):
        shutil.copytree(ROOT / tree, fake_root / tree)
    shutil.copytree(model_dir, fake_root / "saved_models")
    (fake_root / "data/raw/x").mkdir(parents=True)
    (fake_root / "data/raw/x/secret.png").write_bytes(b"not shipped")
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import bundle
    finally:
        sys.path.pop(0)
    out = tmp_path / "slug"
    out.mkdir()
    files = bundle.bundle(out, root=fake_root)
    assert "saved_models/model.tflite" in files and "Procfile" in files
    assert not any(f.startswith(("data/", "tests/")) for f in files)
    code = (
        "import sys; from webapp import create_app; c = create_app().test_client(); "
        "r = c.get('/readyz'); assert r.status_code == 200, r.data; "
        "assert 'tensorflow' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": "src"}  # as the Procfile's --pythonpath src
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    with pytest.raises(SystemExit, match="dvc pull"):
        bundle.bundle(tmp_path / "empty", root=tmp_path)


def test_readme_documents_deploy():
    readme = (ROOT / "README.md").read_text()
    for needle in ("## Deploy", "HEROKU_API_KEY", "HEROKU_APP_NAME", "dvc remote add", "gate"):
        assert needle in readme, needle
