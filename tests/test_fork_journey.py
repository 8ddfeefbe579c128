"""A fork's whole journey, with the README's own commands: photos of your own in place of the
digits, the colour recipe, `dvc repro`, a DVC remote and `dvc push`. Then, in fresh clones as
GitHub Actions runs them, the workflows' own scripts: the pipeline with `dvc pull`, the gate,
the Heroku bundle booted with the Procfile, the smoke check against it, and one round of
feedback -> retrain from the served model -> gate -> push, which a further clone reproduces.

Only what needs GitHub or Heroku themselves is left out: the bundle is booted here instead of
pushed (deploy/heroku.sh), and git's and DVC's remotes are local folders.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from image_classifier import synthetic
from image_classifier.synthetic import Spec

from fork import DVC_CONFIG, ROOT, assert_learnt, set_params, sh, write_params
from helpers import procfile_server

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text(encoding="utf-8")
PHOTOS = Spec((100, 100, 100), seed=7, scale=0.5)  # 300 photo-like JPEGs, about 250 px wide
TOKEN = "journey-token"
# Shorter training than the defaults, to fit a test run; everything else as a user sets it.
# The audit on the trained network's features, not audit.folds networks of its own: they
# would add half of train's time to each of the journey's three repros, and it is about CI and
# deploy (the networks' path, stage and all: tests/test_cross_fit.py).
QUICK = {
    "train": {"epochs": 8, "min_steps": 0, "early_stopping_patience": 3},
    "audit": {"retrain_up_to": 0},
}


def readme_commands(containing: str) -> list[str]:
    """The lines of the README's bash block that holds `containing`, comments stripped; a
    comment line `# params.yaml: key.path: value` is kept as such (an edit to make)."""
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        if containing in block:
            lines = []
            for line in block.splitlines():
                if line.startswith("# params.yaml:"):
                    lines.append(line)
                elif line.strip() and not line.startswith("#"):
                    lines.append(re.sub(r"\s+#.*$", "", line).strip())
            return lines
    raise AssertionError(f"README.md has no bash block with {containing!r}")


def make_recipe(target: str) -> str:
    """The command a Make target runs (the workflows call Make; here its venv is ours)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(rf"^{target}:.*\n\t(.+)$", text, re.M)
    assert recipe, f"no `{target}` target in the Makefile"
    return recipe.group(1)


def run_lines(repo: Path, lines: list[str], swap: dict[str, str]) -> str:
    """Run README lines in `repo` as a user's shell would, with placeholders swapped."""
    out = []
    for line in lines:
        if line.startswith("# params.yaml:"):
            key, value = (p.strip() for p in line.split(":", 1)[1].split("(")[0].rsplit(":", 1))
            *parents, leaf = key.split(".")
            edit: dict = {leaf: yaml.safe_load(value)}
            for parent in reversed(parents):
                edit = {parent: edit}
            set_params(repo, edit)
            continue
        for old, new in swap.items():
            line = line.replace(old, new)
        out.append(sh(repo, "bash", "-c", line))
    return "".join(out)


def has_sample_stage(repo: Path) -> bool:
    return "sample" in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]


def template(root: Path) -> Path:
    """The repository as a fork starts from it: what git tracks, in a bare origin, without the
    fork's own data pointers."""
    work = root / "template"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        # A fork's own `dvc add` pointers (its images, its base model) name data this test
        # does not have; the README's commands track the test's own.
        if name.endswith(".dvc") and not name.startswith(".dvc/"):
            continue
        if (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes((ROOT / name).read_bytes())
    (work / ".dvc/config").write_text(DVC_CONFIG)  # the package's settings, no remote of a fork's
    sh(work, "git", "init", "-q", "-b", "main")
    sh(work, "git", "add", "-A")
    sh(work, "git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "fork")
    origin = root / "origin.git"
    sh(root, "git", "clone", "-q", "--bare", str(work), str(origin))
    return origin


def head(repo: Path) -> str:
    return sh(repo, "git", "rev-parse", "HEAD").strip()


def clone(origin: Path, to: Path) -> Path:
    sh(origin.parent, "git", "clone", "-q", str(origin), str(to))
    sh(to, "git", "config", "user.email", "user@example.com")
    sh(to, "git", "config", "user.name", "user")
    return to


def as_actions(repo: Path, target: str, environ: dict[str, str] | None = None, **make: str) -> str:
    """A workflow step: the command its Make target runs (the workflows call Make; the venv
    here is the test's), with the Make variables and the step's environment given."""
    command = make_recipe(target)
    for name, value in make.items():
        command = command.replace(f"$({name})", value)
    return sh(repo, "bash", "-c", re.sub(r"\$\(\w+\)", "", command), **(environ or {}))


def send_feedback(url: str, count: int) -> int:
    """`count` new photos of each class through the app's feedback API; a reviewer accepts all."""
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()}
    sent = 0
    for label, name in enumerate(PHOTOS.classes):
        for index in range(1000, 1000 + count):
            image = synthetic.render(label, index, PHOTOS)
            _, data = synthetic.encode(image, label, index, PHOTOS)
            files = {"image": ("photo.jpg", data, "image/jpeg")}
            res = requests.post(
                f"{url}/api/v1/feedback", files=files, data={"label": name}, timeout=30
            )
            assert res.status_code == 201, res.text
            sent += 1
    pending = requests.get(f"{url}/api/v1/feedback?status=pending", headers=basic, timeout=10)
    for item in pending.json()["items"]:
        res = requests.post(
            f"{url}/review/{item['id']}", data={"decision": "accept"}, headers=basic,
            timeout=10, allow_redirects=False,
        )  # fmt: skip
        assert res.status_code == 303, res.text
    return sent


def test_a_fork_runs_its_own_images_through_ci_and_deploy(tmp_path, postgres):
    origin = template(tmp_path)
    photos = tmp_path / "photos"
    synthetic.write_dataset(photos, PHOTOS, workers=1)
    remote = tmp_path / "dvc-remote"

    # The user's machine: the README's "Your own images", the colour recipe, a remote.
    fork = clone(origin, tmp_path / "fork")
    forked = head(fork)
    colour = yaml.safe_load(re.search(r"```yaml\n(.*?)```", README, re.S).group(1))
    write_params(fork / "params.yaml", {**colour, **QUICK, "serve": {"feedback": True}})
    own = readme_commands("dvc add data/raw")
    if not has_sample_stage(fork):  # a fork that moved on from the sample already
        own = [line for line in own if line != "dvc remove sample"]
    run_lines(fork, own, {"/path/to/your/classes": str(photos)})
    share = [line for line in readme_commands("dvc remote add") if line != "dvc pull"]
    run_lines(fork, share, {"s3://my-bucket/image-classifier": str(remote)})
    classes = json.loads((fork / "saved_models/model.json").read_text())["classes"]
    assert classes == PHOTOS.classes
    # The photos are learnt: 1.0 on the 45 test images where the majority guess gets 15.
    scores = json.loads((fork / "reports/metrics.json").read_text())
    assert_learnt(scores, len(classes), 0.5)
    audit = json.loads((fork / "reports/audit/summary.json").read_text())
    assert audit["probabilities"] == "features" and audit["images"] > 0, audit

    # GitHub Actions, on the push: a fresh clone runs the workflows' steps.
    ci = clone(origin, tmp_path / "ci")
    assert not (ci / "data/raw").exists()
    pulled = as_actions(ci, "pipeline", ARGS="")
    assert "dvc pull from remote 'storage'" in pulled and "Running stage" not in pulled
    gate = as_actions(ci, "gate", {"BEFORE": forked})  # the push event's `before`: main as forked
    assert "comparison: this model alone" in gate and "quality gate passed" in gate, gate
    slug = tmp_path / "slug"
    sh(ci, "python", "deploy/bundle.py", str(slug))
    environ = {
        "PARAMS_FILE": str(slug / "params.yaml"),  # the bundle's own, as on Heroku
        "MODEL_DIR": str(slug / "saved_models"),
        "DATABASE_URL": postgres.create_database(),
        "FEEDBACK_TOKEN": TOKEN,
        "WEB_CONCURRENCY": "2",
    }
    with procfile_server(slug / "saved_models", tmp_path / "app.log", cwd=slug, **environ) as (
        url,
        _,
    ):
        smoke = as_actions(ci, "smoke", URL=url)
        assert "ok: predicted" in smoke and "FAIL" not in smoke, smoke

        # Feedback on the live app, then the README's "Feedback" loop on the user's machine.
        sent = send_feedback(url, 2)
        loop = readme_commands("image_classifier.feedback export")
        loop = [line.replace("make gate", make_recipe("gate")) for line in loop]
        swap = {
            "FEEDBACK_TOKEN=...": f"FEEDBACK_TOKEN={TOKEN}",
            "https://my-app.herokuapp.com": url,
        }
        before = sum(json.loads((fork / "reports/split.json").read_text())["totals"].values())
        out = run_lines(fork, loop, swap)
    assert f"{sent} new file(s)" in out
    assert "quality gate passed" in out and "trained for the same 3 classes" in out, out
    after = sum(json.loads((fork / "reports/split.json").read_text())["totals"].values())
    assert after == before + sent

    # CI on that push: a fresh clone pulls the images and the served model it continues from,
    # and retrains from it (CI's quick run).
    again = clone(origin, tmp_path / "ci-again")
    assert yaml.safe_load((again / "params.yaml").read_text())["train"]["init_from"]
    quick = as_actions(again, "pipeline", ARGS="-S train.epochs=1")
    assert "Running stage 'train'" in quick, quick
    assert (again / "models/base/model.keras").is_file()
