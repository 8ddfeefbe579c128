"""Serving speed and size: gunicorn (started as the Procfile does) on loopback.

    python bench/serve.py [--workers 2] [--seconds 10] [--venv-size]

Needs the exported model (run `dvc repro` first). Sends a 256x256 JPEG to POST /api/v1/predict:
- latency at concurrency 1 (p50, p95, p99 over --requests sequential requests),
- throughput at concurrency 8 (requests/s over --seconds),
- resident memory of each gunicorn worker afterwards,
- with --venv-size: the size of a fresh virtual environment made from requirements.txt.
Every request goes to 127.0.0.1 only and the loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "benchboundary7d1f"


def jpeg_256() -> bytes:
    """A digit from the bundled sample, upscaled to 256x256, as a photo of it would be."""
    sample = ROOT / "data/raw/3/digit_0003.png"
    if sample.is_file():
        img = Image.open(sample).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)
    else:
        img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def multipart(image: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(port: int, body: bytes) -> float:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST",
        "/api/v1/predict",
        body,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workers: int, drift_db: Path) -> subprocess.Popen:
    # The drift counts stay on (they are part of the per-request cost), in a scratch file.
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    env["DRIFT_DB"] = str(drift_db)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = (ROOT / "Procfile").read_text().split("web:", 1)[1].strip()
    proc = subprocess.Popen(
        cmd,
        shell=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("server did not become ready (is saved_models/ exported? run `dvc repro`)")


def worker_rss_mb(proc: subprocess.Popen) -> list[float]:
    tree = psutil.Process(proc.pid).children(recursive=True)
    master = next(p for p in [psutil.Process(proc.pid), *tree] if p.name() == "gunicorn")
    return [round(w.memory_info().rss / 2**20, 1) for w in master.children()]


def throughput(port: int, body: bytes, concurrency: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * concurrency

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            post(port, body)
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def venv_size_mb() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "-r", str(ROOT / "requirements.txt")], check=True)
        total = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--venv-size", action="store_true")
    args = parser.parse_args()
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("gunicorn is not installed in this environment (make venv)")
    body = multipart(jpeg_256())
    port = free_port()
    scratch = tempfile.TemporaryDirectory()
    proc = start_server(port, args.workers, Path(scratch.name) / "drift.sqlite")
    try:
        for _ in range(20):  # warm-up: every worker has served a few
            post(port, body)
        latencies = sorted(post(port, body) * 1000 for _ in range(args.requests))
        q = statistics.quantiles(latencies, n=100)
        print(
            f"concurrency 1: p50 {statistics.median(latencies):.2f} ms, p95 {q[94]:.2f} ms, "
            f"p99 {q[98]:.2f} ms over {args.requests} requests (256x256 JPEG)"
        )
        rps = throughput(port, body, args.concurrency, args.seconds)
        print(f"concurrency {args.concurrency}, {args.workers} workers: {rps:.0f} requests/s")
        print(f"worker resident memory (MB): {worker_rss_mb(proc)}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        scratch.cleanup()
    if args.venv_size:
        size = venv_size_mb()
        print(f"fresh venv from requirements.txt: {size:.0f} MB on disk ({size / 500:.0%} of")
        print("Heroku's 500 MB slug limit, before the model and the app's own files)")


if __name__ == "__main__":
    main()
