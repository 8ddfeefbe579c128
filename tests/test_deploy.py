"""CI/CD and deployment files: workflows, Dockerfile and manifests pass their linters; the
Heroku bundle carries the model and runs on its own; the smoke check works."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from fork import write_params

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


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/train.Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile):
    result = run(str(BIN / "hadolint"), dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def _name(requirement: str) -> str:
    """PEP 503's normal form, extras dropped: tensorflow[and-cuda] is tensorflow."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[=]", requirement, maxsplit=1)[0]).lower()


def _pins(in_file: Path) -> dict[str, str]:
    """The top-level pins of a requirements*.in file, following its -r includes."""
    pins = {}
    for line in in_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= _pins(in_file.parent / line[3:].strip())
        elif line:
            pins[_name(line)] = line.split("==", 1)[1]
    return pins


def _locked(lock: Path) -> dict[str, str]:
    """Every package of a lock; each must be pinned and carry its hashes."""
    text = lock.read_text()
    assert "make lock" in text.splitlines()[1], f"{lock.name}: not written by `make lock`"
    entries = re.split(r"\n(?=\S)", re.sub(r"(?m)^\s*#.*\n", "", text).strip())
    locked = {}
    for entry in entries:
        requirement = entry.split()[0]
        assert "==" in requirement and "--hash=sha256:" in entry, f"{lock.name}: {entry[:80]}"
        locked[_name(requirement)] = requirement.split("==", 1)[1]
    return locked


def test_locks_pin_every_package_with_hashes():
    """`make lock` writes requirements*.txt from requirements*.in: every package, transitive
    ones included, pinned with its hashes. Each holds its .in's pins, and all take the dev
    set's versions, so what Heroku, the images and a GPU machine install is what CI tested."""
    dev = _locked(ROOT / "requirements-dev.txt")
    assert "uv" in dev, "the Makefile's first uv comes from the dev lock"
    locks = ["requirements.txt", "requirements-pipeline.txt", "requirements-dev.txt"]
    for lock in [*locks, "requirements-gpu.txt"]:
        locked = _locked(ROOT / lock)
        wanted = _pins(ROOT / lock.replace(".txt", ".in"))
        if lock == "requirements-gpu.txt":
            # tensorflow[and-cuda] in place of tensorflow-cpu: both are the `tensorflow` module.
            wanted.pop("tensorflow-cpu")
            assert "tensorflow-cpu" not in locked
        assert {k: locked.get(k) for k in wanted} == wanted, f"{lock}: run `make lock`"
        shared = locked.keys() & dev.keys()
        assert {k: locked[k] for k in shared} == {k: dev[k] for k in shared}, lock
    serving = _locked(ROOT / "requirements.txt")
    assert not [name for name in serving if name.startswith(("tensorflow", "keras"))]
    # Heroku gets requirements.txt through bundle.FILES (test_bundle_carries_the_model...).
    for dockerfile, lock in [("Dockerfile", locks[0]), ("deploy/train.Dockerfile", locks[1])]:
        assert f"--require-hashes -r {lock}" in (ROOT / dockerfile).read_text(), dockerfile


def test_kubernetes_objects_match_the_api_schemas():
    """Every manifest, serving and training, against Kubernetes' own OpenAPI schemas (strict:
    an unknown or misspelt field fails), offline."""
    manifests = sorted(str(p) for p in (ROOT / "deploy/k8s").rglob("*.yaml"))
    assert len(manifests) >= 4
    result = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", *manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = ROOT / "deploy/k8s/service.yaml"
    typo = broken.read_text().replace("selector:", "selectr:")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:  # the check can fail
        fh.write(typo)
        fh.flush()
        assert run(str(BIN / "kubernetes-validate"), "--strict", fh.name).returncode != 0


def test_batch_prediction_job_gives_each_pod_its_shard():
    job = yaml.safe_load((ROOT / "deploy/k8s/batch/predict-job.yaml").read_text())
    count = job["spec"]["completions"]
    assert job["spec"]["completionMode"] == "Indexed"
    command = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert f'--shard "$JOB_COMPLETION_INDEX/{count}"' in command
    assert "$JOB_COMPLETION_INDEX.csv" in command  # one output file per pod


def test_training_job_builds_each_workers_tf_config():
    """The Indexed Job's pods find each other through the headless Service, and the TF_CONFIG
    each computes names every pod, with itself at its own index."""
    from image_classifier import tf_config
    from image_classifier.training.distribute import is_chief

    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/training/train-job.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    workers = int(env["TRAIN_WORKERS"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == workers
    assert pod["subdomain"] == env["TRAIN_SERVICE"] == service["metadata"]["name"]
    assert env["TRAIN_JOB"] == job["metadata"]["name"]
    assert int(env["TRAIN_PORT"]) == service["spec"]["ports"][0]["port"]
    script = container["args"][0]
    assert 'TF_CONFIG="$(python -m image_classifier.tf_config)"' in script
    for index in range(workers):
        environ = {**env, "JOB_COMPLETION_INDEX": str(index)}
        result = subprocess.run(
            [sys.executable, "-m", "image_classifier.tf_config"],
            env={**os.environ, **environ, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            check=True,
        )
        config = json.loads(result.stdout)
        assert config["task"] == {"type": "worker", "index": index}
        hosts = [
            f"{env['TRAIN_JOB']}-{i}.{env['TRAIN_SERVICE']}:{env['TRAIN_PORT']}"
            for i in range(workers)
        ]
        assert config["cluster"] == {"worker": hosts}
        assert is_chief(result.stdout) == (index == 0)
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        tf_config.indexed_job_tf_config(2, 2, "j", "s", 1)


def test_docker_image_carries_what_the_bundle_carries():
    """The model and the model page's reports reach the image: each file the Heroku bundle
    ships from the pipeline is both let through .dockerignore and COPY'd."""
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import bundle
    finally:
        sys.path.pop(0)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    copied = " ".join(
        line
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.startswith("COPY ")
    ).split()
    for name in bundle.MODEL + bundle.REPORTS:
        assert f"!{name}" in ignore, name
        assert name in copied, name
    assert {"saved_models/ood.npz", "reports/model_card.md"} <= {*bundle.MODEL, *bundle.REPORTS}
    assert bundle.MODEL_TREES == ["saved_models/examples"]
    for tree in bundle.MODEL_TREES:
        assert f"!{tree}/" in ignore, tree
        assert tree in copied, tree
    # What the bundle leaves out of the package, the image leaves out too (a later
    # .dockerignore line wins over the `!src/image_classifier/` before it).
    let_in = ignore.index("!src/image_classifier/")
    for name in bundle.GENERATORS:
        assert name in ignore[let_in:], name


def test_actions_pinned_permissions_minimal_no_secrets_echoed():
    for path in WORKFLOWS:
        text = path.read_text()
        doc = yaml.safe_load(text)
        assert doc["permissions"] == {"contents": "read"}, path.name
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                uses = step.get("uses", "")
                if uses and not uses.startswith("$/"):  # a workflow of this repository
                    ref = uses.split("@", 1)[1]
                    assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), uses
                assert "secrets." not in step.get("run", ""), step  # only through env:
        assert "echo $HEROKU_API_KEY" not in text and "set -x" not in text


def step_commands(workflow: str) -> list[str]:
    """The `run:` commands of every step of a workflow, in order."""
    jobs = yaml.safe_load((ROOT / ".github/workflows" / workflow).read_text())["jobs"]
    return [step["run"] for job in jobs.values() for step in job.get("steps", []) if "run" in step]


def test_workflows_call_the_make_targets_that_run_locally():
    """The workflows' logic lives in .ci/run and Make targets (scripts under deploy/), which
    tests/test_fork_journey.py runs in fresh clones; the YAML only calls them."""
    ci = step_commands("ci.yml")
    assert ci[0] == "bash .ci/run" and "make test" in (ROOT / ".ci/run").read_text()
    assert ci[1].startswith("make pipeline ARGS=") and "-S train.epochs=" in ci[1]
    assert any("dvc metrics diff" in c and "dvc params diff" in c for c in ci)
    deploy = " ".join(step_commands("deploy.yml"))
    for target in ("make venv", "make pipeline", "make gate", "make deploy", "make smoke URL="):
        assert target in deploy, target
    makefile = (ROOT / "Makefile").read_text()
    for target, script in (
        ("pipeline", "deploy/pipeline.sh"),
        ("gate", "deploy/gate.sh"),
        ("deploy", "deploy/heroku.sh"),
        ("smoke", "deploy/smoke.py"),
    ):
        assert re.search(rf"^{target}: venv .*\n\t.*{re.escape(script)}", makefile, re.M), target


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
    # The root filesystem is read-only: the drift database lives on a mounted volume.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    database = next(e["value"] for e in container["env"] if e["name"] == "DRIFT_DB")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(database).parent) in mounts
    # Secrets come from Kubernetes Secrets, never from a value in the manifest.
    env = {e["name"]: e for e in container["env"]}
    for name in ("DATABASE_URL", "FEEDBACK_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == name and ref["optional"] is True and "value" not in env[name]
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "image-classifier"
    assert docs["Service"]["spec"]["selector"] == {"app": "image-classifier"}


def fake_repo(root: Path, model_dir: Path, reports_dir: Path) -> Path:
    """What bundle.py reads from a repository, with the tests' tiny exported model."""
    for name in ("Procfile", "requirements.txt", ".python-version"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    write_params(root / "params.yaml")
    for tree in ("webapp", "src/image_classifier"):
        shutil.copytree(ROOT / tree, root / tree)
    shutil.copytree(model_dir, root / "saved_models")
    shutil.copytree(reports_dir, root / "reports")
    return root


def test_bundle_carries_the_model_and_runs_alone(model_dir, reports_dir, tmp_path):
    fake_root = fake_repo(tmp_path / "repo", model_dir, reports_dir)
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
    assert "reports/eval/confusion.png" in files and "reports/metrics.json" in files
    # "none of these", the page's one-click examples and the model card go with the model
    assert "saved_models/ood.npz" in files and "reports/model_card.md" in files
    examples = json.loads((model_dir / "model.json").read_text())["examples"]
    assert {f"saved_models/{e['file']}" for e in examples} <= set(files)
    assert not any(f.startswith(("data/", "tests/")) for f in files)
    assert not set(bundle.GENERATORS) & set(files)  # and the app runs without them, below
    assert "src/image_classifier/evaluation/ood_sets.py" in files  # only the generators go
    assert not any(f.startswith("reports/") and f[8:] not in bundle.REPORT_FILES for f in files)
    code = (
        "import sys; from webapp import create_app; c = create_app().test_client(); "
        "r = c.get('/readyz'); assert r.status_code == 200, r.data; "
        "page = c.get('/model').get_data(as_text=True); "
        "assert 'id=\"headline\"' in page and 'report-problem' not in page, page; "
        "assert c.get('/model/confusion.png').status_code == 200; "
        "assert 'id=\"model-card\"' in page, page; "
        "from PIL import Image; import io; b = io.BytesIO(); "
        "Image.new('L', (12, 12), 255).save(b, 'PNG'); "
        "r = c.post('/api/v1/predict', data={'image': (io.BytesIO(b.getvalue()), 'w.png')}); "
        "p = r.get_json()['predictions'][0]; "
        "assert p['known'] is False and p['label'] is None, p; "
        "index = c.get('/').get_data(as_text=True); "
        "assert 'action=\"/example/0#result\"' in index, index; "
        "assert c.post('/example/0').status_code == 200; "
        "assert 'tensorflow' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": "src"}  # as the Procfile's --pythonpath src
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    with pytest.raises(SystemExit, match="dvc pull"):
        bundle.bundle(tmp_path / "empty", root=tmp_path)


def test_smoke_check_compares_the_top_class_also_when_the_app_calls_it_unknown(
    model_dir, tmp_path, monkeypatch, capsys
):
    """The smoke check tests that the app runs this model file: the example's top class,
    which the app gives under `closest` when its detector rejects the image."""
    from webapp import create_app

    from conftest import live_server

    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import smoke
    finally:
        sys.path.pop(0)
    served = tmp_path / "served"
    shutil.copytree(model_dir, served)
    card = json.loads((served / "model.json").read_text())
    card["ood"]["threshold"] = 1e30  # every image "none of these"
    (served / "model.json").write_text(json.dumps(card))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DRIFT_DB", "")
    params = write_params(tmp_path / "params.yaml")
    with live_server(create_app(model_dir=served, params_file=params)) as url:
        assert smoke.main([url, "--model-dir", str(model_dir), "--wait", "20"]) == 0
        out = capsys.readouterr().out
        predicted = card["example"]["predicted"]
        assert f"ok: predicted {predicted!r} (" in out and "unknown: none of the classes" in out
        wrong = tmp_path / "wrong"
        shutil.copytree(model_dir, wrong)
        other = json.loads((wrong / "model.json").read_text())
        other["example"]["predicted"] = next(c for c in other["classes"] if c != predicted)
        (wrong / "model.json").write_text(json.dumps(other))
        assert smoke.main([url, "--model-dir", str(wrong), "--wait", "20"]) == 1
        assert f"the app answers {predicted!r}" in capsys.readouterr().out


def test_readme_documents_deploy():
    readme = (ROOT / "README.md").read_text()
    for needle in ("## Deploy", "HEROKU_API_KEY", "HEROKU_APP_NAME", "dvc remote add", "gate"):
        assert needle in readme, needle


# Run as: nobody when the tests run as root (CI here); otherwise the test process is already
# an unprivileged user, and the folder is made read-only to it. Either way it runs, no skip.
AS_UNPRIVILEGED = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}


def _read_only(tree: Path) -> None:
    for path in sorted(tree.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    tree.chmod(0o555)


def _unprivileged_python(tmp: Path) -> Path:
    """A venv with only requirements.txt (what Heroku and the Docker image install), built on
    an interpreter the unprivileged user may run (pyenv's under /root is not one)."""
    for candidate in ("/usr/bin/python3.11", "/usr/local/bin/python3.11", sys.executable):
        probe = subprocess.run([candidate, "-c", "0"], capture_output=True, **AS_UNPRIVILEGED)
        if probe.returncode == 0:
            break
    else:
        pytest.fail("no Python 3.11 the unprivileged user can run (looked in /usr/bin, ...)")
    venv = tmp / "venv"
    subprocess.run([candidate, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "-r", str(ROOT / "requirements.txt")],
        check=True,
        capture_output=True,
    )
    return venv / "bin/python"


@pytest.mark.slow
def test_bundle_boots_as_an_unprivileged_user_in_a_read_only_folder(model_dir, reports_dir):
    """What the Dockerfile (uid 10001, root-owned /app) and Kubernetes (readOnlyRootFilesystem)
    do: the Procfile's command, run by a user who can write nowhere but /tmp, and no DRIFT_DB.
    It must serve; the log says why the drift counts cannot be kept (set DATABASE_URL or a
    writable DRIFT_DB)."""
    import requests

    from helpers import free_port

    tmp = Path(tempfile.mkdtemp(prefix="ro-deploy-", dir="/tmp"))
    try:
        tmp.chmod(0o755)
        python = _unprivileged_python(tmp)
        slug = tmp / "slug"
        slug.mkdir()
        fake_root = fake_repo(tmp / "repo", model_dir, reports_dir)
        sys.path.insert(0, str(ROOT / "deploy"))
        try:
            import bundle
        finally:
            sys.path.pop(0)
        bundle.bundle(slug, root=fake_root)
        _read_only(slug)
        # The premise, checked rather than assumed: the server's user cannot write there.
        probe = subprocess.run(
            [str(python), "-c", "open('probe', 'w')"],
            cwd=slug,
            capture_output=True,
            text=True,
            **AS_UNPRIVILEGED,
        )
        assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr
        command = shlex.split((slug / "Procfile").read_text().split("web:", 1)[1])
        port = free_port()
        env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "WEB_CONCURRENCY": "2", "HOME": "/tmp"}
        while "=" in command[0]:  # the Procfile's VAR=value prefixes, as the shell reads them
            name, value = command.pop(0).split("=", 1)
            env[name] = value
        assert command[0] == "gunicorn"
        log = tmp / "server.log"
        proc = subprocess.Popen(
            [str(python), "-m", *command],
            cwd=slug,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **AS_UNPRIVILEGED,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            ready = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    ready = requests.get(f"{url}/readyz", timeout=1)
                    break
                # Not listening yet, or listening while its worker still loads the model (a
                # loaded machine): both mean "not ready", until the deadline.
                except (requests.ConnectionError, requests.Timeout):
                    time.sleep(0.3)
            assert ready is not None and ready.status_code == 200, log.read_text()
            image = (model_dir / "model.json").read_bytes()  # any bytes: not an image
            assert (
                requests.post(
                    f"{url}/api/v1/predict", files={"image": ("x", image)}, timeout=10
                ).status_code
                == 422
            )
            from conftest import pattern, png

            res = requests.post(
                f"{url}/api/v1/predict", files={"image": ("a.png", png(pattern(0, 1)))}, timeout=10
            )
            assert res.status_code == 200, res.text
            assert proc.poll() is None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        text = log.read_text()
        said = re.search(r"database unavailable at start \(sqlite:///(\S+): (.+?)\)", text)
        assert said and said.group(1).endswith("var/app.sqlite"), text
        assert "Permission denied" in said.group(2) or "readonly" in said.group(2), text
        assert "Traceback" not in text
        assert not (slug / "var").exists()
    finally:
        for path in tmp.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)  # so the cleanup can remove what _read_only protected
        shutil.rmtree(tmp, ignore_errors=True)


def test_deploy_without_heroku_secrets_is_skipped_with_what_to_set():
    """A fork without a Heroku app gets a green run: deploy.yml's first step asks
    deploy/heroku.sh --check and skips the rest with its message as a notice."""
    script = ["bash", str(ROOT / "deploy/heroku.sh"), "--check"]
    bare = {k: v for k, v in os.environ.items() if not k.startswith("HEROKU_")}
    none = subprocess.run(script, env=bare, capture_output=True, text=True)
    assert none.returncode == 1
    assert "set the repository secrets HEROKU_API_KEY HEROKU_APP_NAME" in none.stdout
    half = subprocess.run(
        script, env={**bare, "HEROKU_APP_NAME": "a"}, capture_output=True, text=True
    )
    assert half.returncode == 1 and "HEROKU_API_KEY (" in half.stdout
    both = {**bare, "HEROKU_APP_NAME": "a", "HEROKU_API_KEY": "k"}
    assert subprocess.run(script, env=both, capture_output=True, text=True).returncode == 0
    assert "deploy/heroku.sh --check" in (ROOT / ".github/workflows/deploy.yml").read_text()
