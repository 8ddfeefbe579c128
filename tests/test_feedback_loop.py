"""The production loop end to end, on the bundled sample: people send feedback to a live
app, a reviewer accepts it, export writes it into data/raw, `dvc add` and `dvc repro`
(continuing from the served model, train.init_from) make a new model, the gate passes it,
and the app, reloaded, serves the new version. The README's "Feedback" section, run."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import time

import numpy as np
import psutil
import pytest
import requests
import yaml
from PIL import Image

from conftest import png
from fork import copy_project, sh
from test_webapp_server import gunicorn_workers, procfile_server

pytestmark = pytest.mark.slow

TOKEN = "loop-token"
SHORT = {"train": {"epochs": 4, "early_stopping_patience": 2, "min_steps": 0}}


@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory):
    repo = copy_project(tmp_path_factory.mktemp("loop"), SHORT)
    # The README's own-images path, with the bundled sample's images as "your" images.
    sh(repo, "python", "-m", "image_classifier.sample_data")
    sh(repo, "dvc", "remove", "sample")
    sh(repo, "dvc", "add", "-q", "data/raw")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "sample as own images")
    sh(repo, "dvc", "repro")
    return repo


def new_digits(repo, count: int) -> list[tuple[bytes, str]]:
    """Images the model has never seen: sample digits shifted by one pixel, with their class."""
    found = []
    for label in sorted(p.name for p in (repo / "data/raw").iterdir() if p.is_dir()):
        for path in sorted((repo / "data/raw" / label).glob("*.png"))[:2]:
            pixels = np.roll(np.asarray(Image.open(path)), 1, axis=1)
            found.append((png(Image.fromarray(pixels)), label))
    return found[:count]


def test_feedback_becomes_a_new_model_that_the_app_serves(sample_repo, postgres, tmp_path):
    repo = sample_repo
    first = json.loads((repo / "saved_models/model.json").read_text())["version"]
    split_before = json.loads((repo / "reports/split.json").read_text())
    params = tmp_path / "serve.yaml"
    params.write_text("serve:\n  feedback: true\n")
    env = {
        "WEB_CONCURRENCY": "2",
        "MODEL_DIR": str(repo / "saved_models"),
        "REPORTS_DIR": str(repo / "reports"),
        "PARAMS_FILE": str(params),
        "DATABASE_URL": postgres.create_database(),
        "FEEDBACK_TOKEN": TOKEN,
    }
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()}
    with procfile_server(repo / "saved_models", tmp_path / "server.log", **env) as (url, proc):
        assert requests.get(f"{url}/api/v1/model", timeout=10).json()["version"] == first
        sent = new_digits(repo, 8)  # under serve.feedback_per_minute
        for data, label in sent:
            files = {"image": ("x.png", data, "image/png")}
            res = requests.post(
                f"{url}/api/v1/feedback", files=files, data={"label": label}, timeout=30
            )
            assert res.status_code == 201, res.text
        page = requests.get(f"{url}/review", headers=basic, timeout=10)
        assert page.status_code == 200 and f"{len(sent)} pending" in page.text
        pending = requests.get(
            f"{url}/api/v1/feedback?status=pending", headers=basic, timeout=10
        ).json()["items"]
        for item in pending[:-2]:  # the reviewer rejects the last two
            res = requests.post(
                f"{url}/review/{item['id']}", data={"decision": "accept"}, headers=basic,
                timeout=10, allow_redirects=False,
            )  # fmt: skip
            assert res.status_code == 303
        for item in pending[-2:]:
            requests.post(
                f"{url}/review/{item['id']}", data={"decision": "reject"}, headers=basic, timeout=10
            )

        # The loop, as the README gives it.
        out = sh(
            repo, "env", f"FEEDBACK_TOKEN={TOKEN}", "python", "-m", "image_classifier.feedback",
            "export", "--to", "data/raw", "--url", url,
        )  # fmt: skip
        assert f"{len(sent) - 2} new file(s)" in out
        sh(repo, "dvc", "add", "-q", "data/raw")
        (repo / "models/base").mkdir(parents=True)
        for name in ("model.keras", "classes.json", "trained_on.csv"):
            shutil.copy2(repo / "saved_models" / name, repo / "models/base" / name)
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        raw["train"]["init_from"] = "models/base/model.keras"
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        sh(repo, "dvc", "repro")
        sh(repo, "python", "-m", "image_classifier.gate")  # exits 1 if the model is refused
        before_total = sum(split_before["totals"].values())
        after_total = sum(json.loads((repo / "reports/split.json").read_text())["totals"].values())
        assert after_total == before_total + len(sent) - 2  # the accepted images, once each
        second = json.loads((repo / "saved_models/model.json").read_text())["version"]
        assert second != first

        # Deploy: the workers reload the exported model (a new release restarts them too).
        old = {w.pid for w in gunicorn_workers(proc)}
        psutil.Process(next(iter(gunicorn_workers(proc))).ppid()).send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        served = first
        while served != second and time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, ValueError):
                served = requests.get(f"{url}/api/v1/model", timeout=10).json()["version"]
        assert served == second
        assert not old & {w.pid for w in gunicorn_workers(proc)}
    exported = list((repo / "data/raw").rglob("feedback-*"))
    assert len(exported) == len(sent) - 2
    assert (repo / "data/raw/.feedback.csv").is_file()
