"""Serving speed and size: gunicorn (started as the Procfile does) on loopback.

    python bench/serve.py [--workers 2] [--seconds 10] [--venv-size]
    python bench/serve.py --mobilenet224 --explain 20     # a 224-px MobileNetV2, photo JPEG

Needs the exported model (run `dvc repro` first), or --mobilenet224 to export a MobileNetV2
(random weights: cost, not accuracy) at 224 px RGB into a temp folder and send a 500x375
photo-like JPEG instead of the 256x256 digit. Sends it to POST /api/v1/predict:
- latency at concurrency 1 (p50, p95, p99 over --requests sequential requests),
- throughput at concurrency 8 (requests/s over --seconds),
- resident memory of each gunicorn worker: peak while under load, and afterwards,
- with --explain N: N requests of serve.max_explain_files files with ?explain=true, 2 at a
  time, and the workers' peak memory meanwhile,
- with --venv-size: the size of a fresh virtual environment made from requirements.txt.
Every request goes to 127.0.0.1 only and the loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
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
from concurrent.futures import ThreadPoolExecutor
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


def photo_jpeg() -> bytes:
    """A 500x375 photo-like JPEG (image_classifier.synthetic), what phones upload."""
    sys.path.insert(0, str(ROOT / "src"))
    from image_classifier import synthetic

    spec = synthetic.Spec((1,), seed=0)
    img = synthetic.render(0, 0, spec).resize((500, 375))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def mobilenet224(out: Path) -> Path:
    """Export a MobileNetV2 (random weights) at 224 px RGB as the pipeline would."""
    sys.path.insert(0, str(ROOT / "src"))
    from image_classifier import atomic, export, models
    from image_classifier.params import parse_params

    params = parse_params(
        {"image": {"size": 224, "color_mode": "rgb"}, "train": {"model": "mobilenet_v2"}}
    )
    classes = [f"c{i}" for i in range(10)]
    model = models.build_model(len(classes), params.image, params.train)
    tflite = export.to_tflite(model)
    atomic.write_bytes(out / "model.tflite", tflite)
    atomic.write_json(out / "model.json", export.model_card(classes, params, tflite, {}, 0.0))
    return out


def multipart(image: bytes, copies: int = 1) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    part = head + image + b"\r\n"
    return part * copies + f"--{BOUNDARY}--\r\n".encode()


def post(port: int, body: bytes, path: str = "/api/v1/predict") -> float:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        path,
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


def start_server(
    port: int, workers: int, drift_db: Path, model_dir: Path | None = None
) -> subprocess.Popen:
    # The drift counts stay on (they are part of the per-request cost), in a scratch file.
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    env["DRIFT_DB"] = str(drift_db)
    if model_dir is not None:
        env["MODEL_DIR"] = str(model_dir)
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


def _master(proc: subprocess.Popen) -> psutil.Process:
    tree = psutil.Process(proc.pid).children(recursive=True)
    return next(p for p in [psutil.Process(proc.pid), *tree] if p.name() == "gunicorn")


def worker_rss_mb(proc: subprocess.Popen) -> list[float]:
    return [round(w.memory_info().rss / 2**20, 1) for w in _master(proc).children()]


def master_rss_mb(proc: subprocess.Popen) -> float:
    return round(_master(proc).memory_info().rss / 2**20, 1)


class PeakRss:
    """Samples every worker's resident memory every 50 ms; .peak is the largest seen (MB)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.peak, self._stop = proc, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error, StopIteration):
                self.peak = max(self.peak, *worker_rss_mb(self.proc), 0.0)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def throughput(
    port: int, body: bytes, concurrency: int, seconds: float, path: str = "/api/v1/predict"
) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * concurrency

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            post(port, body, path)
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
    parser.add_argument("--mobilenet224", action="store_true")
    parser.add_argument("--explain", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("gunicorn is not installed in this environment (make venv)")
    scratch = tempfile.TemporaryDirectory()
    model_dir = mobilenet224(Path(scratch.name)) if args.mobilenet224 else None
    image = photo_jpeg() if args.mobilenet224 else jpeg_256()
    label = "500x375 JPEG, MobileNetV2 224 px" if args.mobilenet224 else "256x256 JPEG"
    body = multipart(image)
    port = free_port()
    proc = start_server(port, args.workers, Path(scratch.name) / "drift.sqlite", model_dir)
    try:
        for _ in range(20):  # warm-up: every worker has served a few
            post(port, body)
        latencies = sorted(post(port, body) * 1000 for _ in range(args.requests))
        q = statistics.quantiles(latencies, n=100)
        print(
            f"concurrency 1: p50 {statistics.median(latencies):.2f} ms, p95 {q[94]:.2f} ms, "
            f"p99 {q[98]:.2f} ms over {args.requests} requests ({label})"
        )
        with PeakRss(proc) as load:
            rps = throughput(port, body, args.concurrency, args.seconds)
        print(f"concurrency {args.concurrency}, {args.workers} workers: {rps:.0f} requests/s")
        print(
            f"worker resident memory (MB): {worker_rss_mb(proc)}; peak under load {load.peak}; "
            f"gunicorn master {master_rss_mb(proc)}"
        )
        if args.explain:
            files = 4  # serve.max_explain_files
            explain_body = multipart(image, files)
            with PeakRss(proc) as peak:
                start = time.perf_counter()
                with ThreadPoolExecutor(2) as pool:
                    took = list(
                        pool.map(
                            lambda _: post(port, explain_body, "/api/v1/predict?explain=true"),
                            range(args.explain),
                        )
                    )
                elapsed = time.perf_counter() - start
            print(
                f"explain, {files} files a request, 2 at a time: median "
                f"{statistics.median(took) * 1000:.0f} ms a request, {args.explain / elapsed:.1f} "
                f"requests/s; worker peak memory {peak.peak} MB, after {worker_rss_mb(proc)}"
            )
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
