"""The real thing: gunicorn started from the Procfile by honcho, spoken to over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import fuzzing
from conftest import pattern, png
from helpers import procfile_server

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _workers_once(proc: subprocess.Popen) -> list[psutil.Process]:
    procs = psutil.Process(proc.pid).children(recursive=True)
    masters = [p for p in procs if p.name() == "gunicorn" and p.children()]
    return masters[0].children() if masters else []


def gunicorn_workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """The gunicorn master's workers. A worker that exits while they are listed (a reload, a
    recycle) makes psutil raise; list again, as a reader of the process table must."""
    for _ in range(20):
        with contextlib.suppress(psutil.NoSuchProcess):
            return _workers_once(proc)
        time.sleep(0.05)
    return _workers_once(proc)  # still failing: the server itself is gone; let it raise


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server(model_dir, server_log, postgres):
    """Three workers as production runs them: PostgreSQL (DATABASE_URL) and feedback on."""
    params = server_log.parent / "params.yaml"
    params.write_text("serve:\n  feedback: true\n  feedback_per_minute: 100000\n")
    database = postgres.create_database()
    env = {"WEB_CONCURRENCY": "3", "DATABASE_URL": database, "PARAMS_FILE": str(params)}
    with procfile_server(model_dir, server_log, **env) as running:
        yield running


def test_procfile_serves_predictions_over_http(server):
    url, _ = server
    files = {"image": ("a.png", png(pattern(0, 1)), "image/png")}
    res = requests.post(f"{url}/api/v1/predict", files=files, timeout=10)
    assert res.status_code == 200
    pred = res.json()["predictions"][0]
    # pattern 0 is the fixture model's cat: its answer, or its closest class if unknown
    assert (pred["label"] if pred["known"] else pred["closest"][0]["label"]) == "cat"


def test_workers_say_none_of_these_and_count_it_across_workers(server):
    """Blank images, far below the fixture detector's threshold, through the real workers:
    each is unknown, with its closest classes, and /metrics (summed over the workers) and
    /api/v1/drift (PostgreSQL) count every one."""
    from PIL import Image

    url, _ = server
    blank = png(Image.new("L", (12, 12), 255))

    def unknown_counted() -> tuple[float, int]:
        text = requests.get(f"{url}/metrics", timeout=10).text
        metric = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "unknown_predictions"
            for sample in family.samples
            if sample.name == "unknown_predictions_total"
        )
        return metric, requests.get(f"{url}/api/v1/drift", timeout=10).json()["profile"]["unknown"]

    metric_before, drift_before = unknown_counted()

    def send(_) -> dict:
        files = {"image": ("blank.png", blank, "image/png")}
        return requests.post(f"{url}/api/v1/predict", files=files, timeout=30).json()

    with ThreadPoolExecutor(6) as pool:
        answers = [r["predictions"][0] for r in pool.map(send, range(24))]
    assert all(a["known"] is False and a["label"] is None for a in answers)
    assert all(len(a["closest"]) == 3 for a in answers)
    deadline = time.monotonic() + 15  # each worker writes its counts within a second
    while unknown_counted()[1] - drift_before < 24 and time.monotonic() < deadline:
        time.sleep(0.3)
    metric_after, drift_after = unknown_counted()
    assert metric_after - metric_before == 24 and drift_after - drift_before == 24


def test_web_concurrency_sets_worker_count(server):
    _, proc = server
    assert len(gunicorn_workers(proc)) == 3


def wait_for_workers(proc: subprocess.Popen, n: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = gunicorn_workers(proc)
        if len(workers) == n:
            return workers
        time.sleep(0.2)
    pytest.fail(f"expected {n} workers, found {len(gunicorn_workers(proc))}")


def pinned_cpus(proc: subprocess.Popen, n: int, log: Path) -> list[int]:
    """The CPUs of the n workers, once each has pinned itself (post_fork runs in the child)
    and said so in the server's log; the log and the kernel's affinity must agree."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        said = {int(pid): int(cpu) for pid, cpu in PINNED.findall(log.read_text(errors="replace"))}
        with contextlib.suppress(psutil.Error):
            workers = wait_for_workers(proc, n)
            if all(w.pid in said for w in workers):
                assert all(w.cpu_affinity() == [said[w.pid]] for w in workers)
                return sorted(said[w.pid] for w in workers)
        time.sleep(0.2)
    pytest.fail(f"workers not pinned: {[w.cpu_affinity() for w in gunicorn_workers(proc)]}")


PINNED = re.compile(r"worker (\d+) pinned to CPU (\d+)")


def test_one_worker_per_cpu_pins_each_to_its_own(model_dir, tmp_path):
    """WEB_CONCURRENCY = the CPUs: every worker on a CPU of its own, also after a recycled
    worker is replaced and after a HUP reload; more workers than CPUs: none pinned. The
    server's log says which worker it pinned where, so this holds on one CPU too."""
    cpus = os.sched_getaffinity(0)
    one_per_cpu = {"WEB_CONCURRENCY": str(len(cpus)), "PIN_WORKERS": "1", "LITERT_THREADS": "1"}
    log = tmp_path / "pinned.log"
    with procfile_server(model_dir, log, **one_per_cpu) as (url, proc):
        assert pinned_cpus(proc, len(cpus), log) == sorted(cpus)
        leaving = wait_for_workers(proc, len(cpus))[0]
        leaving.send_signal(signal.SIGTERM)  # as max_requests recycles it
        leaving.wait(timeout=20)
        assert pinned_cpus(proc, len(cpus), log) == sorted(cpus)
        old = {w.pid for w in gunicorn_workers(proc)}
        master = psutil.Process(gunicorn_workers(proc)[0].ppid())
        master.send_signal(signal.SIGHUP)  # new workers start while the old hold every CPU
        deadline = time.monotonic() + 30
        while old & {w.pid for w in gunicorn_workers(proc)} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not old & {w.pid for w in gunicorn_workers(proc)}
        assert pinned_cpus(proc, len(cpus), log) == sorted(cpus)
        assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    more = {**one_per_cpu, "WEB_CONCURRENCY": str(len(cpus) + 1)}
    log = tmp_path / "unpinned.log"
    with procfile_server(model_dir, log, **more) as (url, proc):
        workers = wait_for_workers(proc, len(cpus) + 1)
        assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
        assert all(set(w.cpu_affinity()) == cpus for w in workers)
        assert "Booting worker" in log.read_text() and not PINNED.search(log.read_text())


def test_workers_survive_bad_input(server):
    url, proc = server
    before = sorted(p.pid for p in gunicorn_workers(proc))
    for body in (b"", b"text", png(pattern(0, 0))[:100]):
        res = requests.post(f"{url}/api/v1/predict", files={"image": ("x", body)}, timeout=10)
        assert 400 <= res.status_code < 500
    big = requests.post(
        f"{url}/api/v1/predict", files={"image": ("x", b"0" * (9 << 20))}, timeout=30
    )
    assert big.status_code == 413
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    assert sorted(p.pid for p in gunicorn_workers(proc)) == before


def predictions_counted(url: str) -> float:
    """/metrics' count of POST /api/v1/predict answered 200 (0 before the first)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    wanted = {"method": "POST", "route": "/api/v1/predict", "status": "200"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels == wanted:
                return sample.value
    return 0.0


def predictions_logged(log: Path, offset: int) -> list[int]:
    """The worker pid of each POST /api/v1/predict answered 200 that the app logged after
    byte `offset` of the server's log (honcho puts a prefix before each JSON line)."""
    pids = []
    with log.open("rb") as fh:
        fh.seek(offset)
        for raw in fh.read().decode(errors="replace").splitlines():
            _, brace, rest = raw.partition("{")
            try:
                line = json.loads(brace + rest)
            except ValueError:
                continue  # gunicorn's own lines, or one still being written
            if line.get("path") == "/api/v1/predict" and line.get("status") == 200:
                pids.append(line["pid"])
    return pids


def test_metrics_aggregate_across_workers(server, server_log):
    """/metrics, answered by one worker, counts every worker's requests: with two or more
    workers serving, its count must equal the requests sent, not one worker's share."""
    url, proc = server
    before = predictions_counted(url)
    offset = server_log.stat().st_size
    image = png(pattern(1, 0))

    def send(_) -> int:
        files = {"image": ("a.png", image, "image/png")}
        return requests.post(f"{url}/api/v1/predict", files=files, timeout=30).status_code

    sent, batch = 0, 24
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(12) as pool:  # concurrent: one busy worker leaves the next to others
        while sent < 20 * batch and time.monotonic() < deadline:
            assert list(pool.map(send, range(batch))) == [200] * batch
            sent += batch
            if len(set(predictions_logged(server_log, offset))) >= 2:
                break
    deadline = time.monotonic() + 30  # the log goes through honcho: allow it to catch up
    while len(pids := predictions_logged(server_log, offset)) < sent:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(pids) == sent
    served = Counter(pids)
    assert len(served) >= 2, f"one worker served all {sent} requests: nothing to aggregate"
    assert set(served) <= {w.pid for w in gunicorn_workers(proc)}, served
    assert predictions_counted(url) - before == sent, served


def test_serving_path_never_imports_tensorflow(model_dir, default_params):
    code = f"""
import io, sys
from webapp import create_app
client = create_app(model_dir={str(model_dir)!r}, params_file={str(default_params)!r}).test_client()
from PIL import Image
buf = io.BytesIO()
Image.new("L", (12, 12), 255).save(buf, format="PNG")
form = {{"image": (io.BytesIO(buf.getvalue()), "a.png")}}
res = client.post("/api/v1/predict?explain=1", data=form)
assert res.status_code == 200, res.data
assert "tensorflow" not in sys.modules, "tensorflow was imported"
assert "keras" not in sys.modules, "keras was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def smoke(url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "deploy/smoke.py"), url, *args, "--wait", "20"]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_deploy_smoke_check_passes_against_a_live_server(server, model_dir, tmp_path):
    """The smoke check posts the example that ships with the model and expects model.json's
    answer from model.json's version; a card the server does not serve fails it."""
    url, _ = server
    result = smoke(url, "--model-dir", str(model_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    expected = json.loads((model_dir / "model.json").read_text())["example"]["predicted"]
    assert f"ok: predicted {expected!r}" in result.stdout
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    card = json.loads((other / "model.json").read_text())
    card["version"] = "another-model"
    card["example"]["predicted"] = next(c for c in card["classes"] if c != expected)
    (other / "model.json").write_text(json.dumps(card))
    failed = smoke(url, "--model-dir", str(other))
    assert failed.returncode == 1
    assert "FAIL: the app serves model" in failed.stdout
    assert f"the app answers {expected!r}" in failed.stdout
    image = tmp_path / "a.png"
    image.write_bytes(png(pattern(2, 5)))
    any_file = smoke(url, "--model-dir", str(model_dir), "--image", str(image))
    assert any_file.returncode == 0, any_file.stdout + any_file.stderr


def test_fuzzed_uploads_never_get_a_5xx(server):
    """5,000 mutated files of every format Pillow writes here, 8 at a time, to the real
    gunicorn workers: each gets a 200 (the damage left a decodable image) or a JSON 4xx that
    says what was wrong; no 5xx, and every worker is still the one that started."""
    url, proc = server
    before = sorted(p.pid for p in gunicorn_workers(proc))
    seeds = fuzzing.seed_files()
    assert len(seeds) >= 25, sorted(seeds)  # PNG, JPEG, BMP, WebP, ICO, PPM, SGI, DDS, PDF...

    def send(item: tuple[str, bytes]) -> tuple[str, int, dict]:
        fmt, data = item
        res = requests.post(f"{url}/api/v1/predict", files={"image": ("upload", data)}, timeout=30)
        return fmt, res.status_code, res.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, fuzzing.mutated(seeds, 5000, seed=7)))
    statuses = Counter(status for _, status, _ in results)
    assert sum(statuses.values()) == 5000
    assert statuses[200] > 250, statuses  # lightly damaged files still decode: not all refused
    assert not [r for r in results if r[1] >= 500], statuses
    # "file 1 (upload): <what is wrong>"
    reasons = [
        body["error"]["message"].split(": ", 1)[1] for _, status, body in results if status != 200
    ]
    known = ("not an image", "corrupt or truncated image", "image too large", "image has no")
    assert reasons and all(r.startswith(known) for r in reasons), Counter(
        r.split(":")[0] for r in reasons
    )
    assert sorted(p.pid for p in gunicorn_workers(proc)) == before


def test_fuzzed_feedback_never_gets_a_5xx(server):
    """1,000 mutated files as feedback: stored (201/200) when they decode, else a JSON 4xx;
    the workers stay up."""
    url, proc = server
    before = sorted(p.pid for p in gunicorn_workers(proc))

    def send(item: tuple[str, bytes]) -> int:
        files = {"image": ("upload", item[1])}
        data = {"label": "cat"}
        return requests.post(
            f"{url}/api/v1/feedback", files=files, data=data, timeout=30
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(send, fuzzing.mutated(fuzzing.seed_files(), 1000, seed=3)))
    assert sum(statuses.values()) == 1000
    assert statuses[201] > 50 and not [s for s in statuses if s >= 500], statuses
    assert sorted(p.pid for p in gunicorn_workers(proc)) == before
