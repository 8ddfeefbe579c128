"""deploy/fetch.py: CI's and the deploy's `dvc pull`, and what it says when a fork's images
cannot be fetched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fork import DVC_CONFIG, ROOT, env, sh

sys.path.insert(0, str(ROOT / "deploy"))
try:
    import fetch
finally:
    sys.path.pop(0)


def test_missing_secrets_are_named_by_the_remote_scheme():
    assert fetch.missing_secrets("s3://bucket/x", {}) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    assert fetch.missing_secrets("s3://bucket/x", {"AWS_ACCESS_KEY_ID": "k"}) == [
        "AWS_SECRET_ACCESS_KEY"
    ]
    assert fetch.missing_secrets("gs://bucket", {}) == ["GOOGLE_APPLICATION_CREDENTIALS"]
    assert fetch.missing_secrets("/srv/dvc", {}) == []  # a local folder needs none


def test_diagnosis_says_what_to_set():
    absent = [Path("data/raw")]
    no_secret = fetch.diagnosis(absent, ("storage", "s3://bucket/x"), {})
    assert "data/raw not fetched" in no_secret and "AWS_ACCESS_KEY_ID" in no_secret
    assert "repository secrets" in no_secret
    assert "no default DVC remote" in fetch.diagnosis(absent, None, {})
    pushed = fetch.diagnosis(absent, ("storage", "/srv/dvc"), {})
    assert "was `dvc push` run?" in pushed


@pytest.fixture
def project(tmp_path) -> Path:
    """A git + DVC project whose images are tracked with `dvc add`."""
    repo = tmp_path / "repo"
    (repo / "data/raw/a").mkdir(parents=True)
    (repo / "data/raw/a/1.png").write_bytes(b"not really a png")
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    (repo / ".dvc/config").write_text(DVC_CONFIG)
    sh(repo, "dvc", "add", "-q", "data/raw")
    return repo


def test_tracked_sources_are_the_dvc_add_outputs(project):
    (project / "models/base").mkdir(parents=True)
    (project / "models/base/model.keras").write_bytes(b"m")
    sh(project, "dvc", "add", "-q", "models/base")
    assert fetch.tracked_sources(project) == [Path("data/raw"), Path("models/base")]


def test_a_clone_pulls_its_images_or_says_why_not(project, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", env()["PATH"])  # a shell in the venv, as `make pipeline` runs it
    remote = tmp_path / "remote"
    sh(project, "dvc", "remote", "add", "-d", "storage", str(remote))
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=t", "-c", "user.email=t@e.x", "commit", "-qm", "x")
    bare = tmp_path / "without-remote"
    sh(tmp_path, "git", "clone", "-q", str(project), str(bare))
    sh(bare, "dvc", "remote", "remove", "storage")
    assert fetch.main(bare) == 1
    assert "no default DVC remote is configured" in capsys.readouterr().out
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    assert fetch.main(clone) == 1  # nothing pushed yet
    assert "data/raw not fetched from remote 'storage'" in capsys.readouterr().out
    sh(project, "dvc", "push", "-q")
    assert fetch.main(clone) == 0
    assert (clone / "data/raw/a/1.png").read_bytes() == b"not really a png"
