"""Serving speed and memory, ours side by side with the tutorials' pattern, in one run.

    python bench/serve.py [--model-dir saved_models] [--image FILE] [--workers 2]
    python bench/serve.py --make mobilenet_v2 --quantization int8 --explain 20
    python bench/serve.py --no-peer --databases none,sqlite,postgresql

Serves one exported model (model.tflite + model.json, and model.keras for the peer) on
loopback and sends every server the same upload to POST /api/v1/predict:
- ours: gunicorn started as the Procfile does (gthread, --workers, LITERT_THREADS=--threads);
- the tutorials' pattern (bench/tutorial_app.py): Flask calling Keras `model.predict` on the
  same model, started as their Procfile `web: gunicorn app:app` is, once for each count in
  --peer-workers (default 1 and 2) given as WEB_CONCURRENCY, which gunicorn reads: Heroku's
  Python buildpack sets WEB_CONCURRENCY=2 on a 512 MB dyno (Basic, Standard-1X).
For each: latency at concurrency 1 (p50/p95/p99 over --requests sequential requests) and
throughput at --concurrency (requests/s over --seconds), both sent by ApacheBench `ab` when it
is installed (apt-get install apache2-utils), else by this script's threads (which cost more
CPU on the same cores and add their own time to the latency); under that load, every worker's
peak resident memory, the peak of master plus workers (what a dyno's memory quota counts),
and each CPU's idle seconds (PIN_WORKERS=0 in the environment turns our pinning off).
--no-malloc-arena-max starts ours without the Procfile's MALLOC_ARENA_MAX=2.
--make ARCH exports a model at 224 px RGB into a temp folder instead (random weights whose
BatchNormalization statistics are set from photo-like images, so activations are well scaled
as in a trained network; cost, not accuracy), quantized as --quantization says, waits --settle
seconds (see main) and sends a 500x375 photo-like JPEG. --image sends your file. --explain N
adds N explain requests; --databases runs ours once per database (none: no drift counts or
feedback; sqlite; postgresql: a throwaway server unless --database-url); --venv-size
measures a fresh virtual environment from requirements.txt (the slug's bulk).
Every request goes to 127.0.0.1 only and the loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
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

import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "benchboundary7d1f"
ARENA = "MALLOC_ARENA_MAX=2 "


def jpeg_256() -> bytes:
    """A digit upscaled to 256x256, as a photo of it would be: the sample's digit_0003, drawn
    by the package's sample code here. Not read from a data/raw, which in a fork holds its
    own images."""
    sys.path.insert(0, str(ROOT / "src"))
    from image_classifier.sample_data import digit_images

    _, pixels = digit_images()[3]
    img = Image.fromarray(pixels).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)
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


MAKE_SCRIPT = """
import sys
from pathlib import Path
import keras
import numpy as np
from image_classifier import atomic, export, synthetic
from image_classifier.training import models
from image_classifier.litert import quantize
from image_classifier.params import parse_params

arch, mode, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
raw = {"image": {"size": 224, "color_mode": "rgb"}, "train": {"model": arch, "weights": None}}
raw["export"] = {"quantization": mode}
params = parse_params(raw)
classes = [f"c{i}" for i in range(10)]
model = models.build_model(len(classes), params.image, params.train)
spec = synthetic.Spec((10,) * 10, seed=99)
photos = [synthetic.render(i % 10, i, spec).resize((224, 224)) for i in range(64)]
x = np.stack([np.asarray(p, dtype="float32") for p in photos])
for layer in model.layers + models.find_base(model).layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.0  # moving statistics := this batch's
model(x, training=True)
model.save(out / "model.keras")
float_model = export.to_tflite(model)
tflite = quantize.quantize(float_model, mode, [x[:32], x[32:]])
check = {"max_prob_diff": None, "top1_agreement": None, "n_images": 0}
atomic.write_bytes(out / "model.tflite", tflite)
atomic.write_json(out / "model.json", export.model_card(classes, params, tflite, {}, check))
"""


def make_model(arch: str, quantization: str, out: Path) -> Path:
    """Export `arch` at 224 px RGB (see the module docstring) into `out`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-c", MAKE_SCRIPT, arch, quantization, str(out)]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
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


def wait_ready(proc: subprocess.Popen, port: int, what: str) -> subprocess.Popen:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"{what} did not become ready (is the model exported? run `dvc repro`)")


def env_with_venv(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def database_env(kind: str, scratch: Path, postgres_url: str) -> dict[str, str]:
    """The server's database settings for one --databases entry; feedback on with one."""
    params = scratch / f"params-{kind}.yaml"
    params.write_text(f"serve:\n  feedback: {'false' if kind == 'none' else 'true'}\n")
    env = {"PARAMS_FILE": str(params), "DATABASE_URL": "", "DRIFT_DB": ""}
    if kind == "sqlite":
        env["DRIFT_DB"] = str(scratch / "drift.sqlite")
    elif kind == "postgresql":
        env["DATABASE_URL"] = postgres_url
    return env


def start_ours(
    port: int,
    workers: int,
    threads: int,
    database: dict[str, str],
    model_dir: Path,
    arena_limit: bool = True,
) -> subprocess.Popen:
    env = env_with_venv(
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        LITERT_THREADS=str(threads),
        MODEL_DIR=str(model_dir.resolve()),
        REPORTS_DIR=str(Path(database["PARAMS_FILE"]).parent),  # none needed to predict
        **database,
    )
    cmd = (ROOT / "Procfile").read_text().split("web:", 1)[1].strip()
    if not arena_limit:
        if ARENA not in cmd:
            raise SystemExit(f"the Procfile does not set {ARENA.strip()}: {cmd}")
        cmd = cmd.replace(ARENA, "")
    proc = subprocess.Popen(
        cmd,
        shell=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_ready(proc, port, "our server")


def start_peer(port: int, model_dir: Path, workers: int = 1) -> subprocess.Popen:
    """The tutorials' `web: gunicorn app:app`: the worker count comes from WEB_CONCURRENCY, as
    on Heroku. --timeout only lets a loaded machine import TensorFlow in each worker."""
    env = env_with_venv(
        MODEL_DIR=str(model_dir.resolve()),
        TF_CPP_MIN_LOG_LEVEL="2",
        WEB_CONCURRENCY=str(workers),
    )
    cmd = [
        "gunicorn", "--bind", f"127.0.0.1:{port}", "--timeout", "120",
        "--pythonpath", str(ROOT / "bench"), "tutorial_app:app",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_ready(proc, port, "the tutorials' server")


def _master(proc: subprocess.Popen) -> psutil.Process:
    tree = psutil.Process(proc.pid).children(recursive=True)
    return next(p for p in [psutil.Process(proc.pid), *tree] if p.name() == "gunicorn")


def worker_rss_mb(proc: subprocess.Popen) -> list[float]:
    return [round(w.memory_info().rss / 2**20, 1) for w in _master(proc).children()]


def master_rss_mb(proc: subprocess.Popen) -> float:
    return round(_master(proc).memory_info().rss / 2**20, 1)


class PeakRss:
    """Samples every worker's resident memory every 50 ms; .peak is the largest one worker
    reached (MB), .total the largest sum of the master's and every worker's.

    The workers are looked up again only while one is missing (a recycled worker): finding them
    walks the whole process table, ~1.6 ms of CPU that would be taken from the server 20 times
    a second on the cores it is measured on.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.peak, self.total, self._stop = proc, 0.0, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        workers: list[psutil.Process] = []
        master = None
        most = 0  # a recycled worker's replacement may not be there yet when it is missed
        while not self._stop.is_set():
            try:
                if len(workers) < most or not workers:
                    master = _master(self.proc)
                    workers = master.children()
                    most = max(most, len(workers))
                rss = [w.memory_info().rss / 2**20 for w in workers]
                self.peak = max(self.peak, round(max(rss, default=0.0), 1))
                total = sum(rss) + master.memory_info().rss / 2**20
                self.total = max(self.total, round(total, 1))
            except (psutil.Error, StopIteration, AttributeError):
                workers = []
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def throughput_threads(port: int, body: bytes, concurrency: int, seconds: float) -> float:
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


def run_ab(port: int, body: bytes, concurrency: int, *limit: str) -> tuple[str, dict[int, float]]:
    """ApacheBench's report and its latency percentiles (ms) from its CSV (-e)."""
    with tempfile.TemporaryDirectory() as tmp:
        payload, table = Path(tmp) / "body", Path(tmp) / "percentiles.csv"
        payload.write_bytes(body)
        cmd = [
            "ab", "-q", *limit, "-c", str(concurrency), "-p", str(payload), "-e", str(table),
            "-T", f"multipart/form-data; boundary={BOUNDARY}",
            f"http://127.0.0.1:{port}/api/v1/predict",
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows = [line.split(",") for line in table.read_text().splitlines()[1:]]
    fields = dict(
        line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith(" ")
    )
    failed = int(fields["Failed requests"].split()[0]) + int(
        fields.get("Non-2xx responses", "0").split()[0]
    )
    if failed:
        raise RuntimeError(f"ab: {failed} failed requests\n{out}")
    return out, {int(float(pct)): float(ms) for pct, ms in rows}


def throughput_ab(port: int, body: bytes, concurrency: int, seconds: float) -> float:
    out, _ = run_ab(port, body, concurrency, "-t", str(seconds), "-n", "1000000")
    line = next(x for x in out.splitlines() if x.startswith("Requests per second:"))
    return float(line.split()[3])


def throughput(port: int, body: bytes, concurrency: int, seconds: float) -> tuple[float, str]:
    if shutil.which("ab"):
        return throughput_ab(port, body, concurrency, seconds), "ab"
    return throughput_threads(port, body, concurrency, seconds), "python threads"


def venv_size_mb() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "-r", str(ROOT / "requirements.txt")], check=True)
        total = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        return total / 2**20


def measure(proc: subprocess.Popen, port: int, body: bytes, args) -> dict:
    """Latency at concurrency 1, throughput at args.concurrency, workers' memory."""
    for _ in range(20):  # warm-up: every worker has served a few
        post(port, body)
    if shutil.which("ab"):  # a C client: its own overhead barely shows in the latency
        _, pct = run_ab(port, body, 1, "-n", str(args.requests))
        p50, p95, p99 = pct[50], pct[95], pct[99]
    else:
        latencies = sorted(post(port, body) * 1000 for _ in range(args.requests))
        q = statistics.quantiles(latencies, n=100)
        p50, p95, p99 = statistics.median(latencies), q[94], q[98]
    idle_before = [c.idle for c in psutil.cpu_times(percpu=True)]
    with PeakRss(proc) as load:
        rps, client = throughput(port, body, args.concurrency, args.seconds)
    idle = [c.idle - b for c, b in zip(psutil.cpu_times(percpu=True), idle_before, strict=True)]
    return {
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "p99_ms": round(p99, 2),
        "rps": round(rps, 1),
        "load_client": client,
        "worker_peak_rss_mb": load.peak,
        "total_peak_rss_mb": load.total,
        "worker_rss_mb_after": worker_rss_mb(proc),
        "cpu_idle_s": [round(s, 2) for s in idle],
        "workers": len(worker_rss_mb(proc)),
    }


def explain(proc: subprocess.Popen, port: int, image: bytes, n: int) -> dict:
    files = 4  # serve.max_explain_files
    body = multipart(image, files)
    with PeakRss(proc) as peak:
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            took = list(
                pool.map(lambda _: post(port, body, "/api/v1/predict?explain=true"), range(n))
            )
        elapsed = time.perf_counter() - start
    return {
        "files_per_request": files,
        "median_ms": round(statistics.median(took) * 1000),
        "rps": round(n / elapsed, 2),
        "worker_peak_rss_mb": peak.peak,
    }


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "saved_models")
    parser.add_argument("--make", choices=["mobilenet_v2", "efficientnet_b0", "resnet50"])
    parser.add_argument("--quantization", default="none", help="with --make")
    parser.add_argument("--image", type=Path, help="the upload (default: see the docstring)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="LITERT_THREADS per worker")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--settle", type=float, default=30.0, help="pause after --make, s")
    parser.add_argument("--no-peer", action="store_true", help="skip the tutorials' pattern")
    parser.add_argument(
        "--peer-workers",
        default="1,2",
        help="WEB_CONCURRENCY values the tutorials' pattern runs with, comma-separated",
    )
    parser.add_argument(
        "--no-malloc-arena-max", action="store_true", help="ours without MALLOC_ARENA_MAX=2"
    )
    parser.add_argument("--venv-size", action="store_true")
    parser.add_argument("--explain", type=int, default=0, metavar="N")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--databases",
        default="sqlite",
        help="ours once per entry of none,sqlite,postgresql (drift counts and feedback on; "
        "the first is compared with the peers)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL for the postgresql entry (default: a throwaway server started with "
        "initdb, as the tests do; needs Debian's postgresql package)",
    )
    args = parser.parse_args()
    peer_workers = [] if args.no_peer else [int(w) for w in args.peer_workers.split(",") if w]
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("gunicorn is not installed in this environment (make venv)")
    scratch = tempfile.TemporaryDirectory()
    model_dir = args.model_dir
    if args.make:
        model_dir = make_model(args.make, args.quantization, Path(scratch.name))
        # Measured here: right after the TensorFlow process that made the model exits, the
        # same server does ~5 % fewer requests/s for about half a minute (MobileNetV2 int8:
        # 298 and 308 at once, 312 and 317 after 30 s); a CPU burn of the same length leaves
        # no such trace. Not part of what is measured, so it is waited out.
        time.sleep(args.settle)
    card = json.loads((model_dir / "model.json").read_text())
    if args.image:
        image, label = args.image.read_bytes(), args.image.name
    elif card["input"]["color_mode"] == "rgb" and card["input"]["size"] >= 64:
        image, label = photo_jpeg(), "500x375 photo-like JPEG"
    else:
        image, label = jpeg_256(), "256x256 JPEG of a digit"
    body = multipart(image)
    results: dict = {
        "model": {
            "architecture": card.get("architecture"),
            "input": card["input"]["size"],
            "quantization": card.get("quantization", "none"),
            "tflite_kb": round((model_dir / "model.tflite").stat().st_size / 1024),
        },
        "upload": label,
        "workers": args.workers,
        "litert_threads": args.threads,
        "malloc_arena_max": not args.no_malloc_arena_max,
        "pin_workers": os.environ.get("PIN_WORKERS", "default"),
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "requests": args.requests,
        "peers": {},
    }
    kinds = [k for k in args.databases.split(",") if k]
    if not kinds or set(kinds) - {"none", "sqlite", "postgresql"}:
        raise SystemExit(f"--databases: expected none, sqlite or postgresql, got {args.databases}")
    server = None
    postgres_url = args.database_url or ""
    if "postgresql" in kinds and not postgres_url:
        sys.path.insert(0, str(ROOT / "tests"))
        from postgres import PostgresServer

        server = PostgresServer()
        postgres_url = server.create_database()
    results["databases"] = {}
    try:
        for n, kind in enumerate(kinds):
            port = free_port()
            database = database_env(kind, Path(scratch.name), postgres_url)
            proc = start_ours(
                port,
                args.workers,
                args.threads,
                database,
                model_dir,
                arena_limit=not args.no_malloc_arena_max,
            )
            try:
                results["databases"][kind] = measure(proc, port, body, args)
                if n == 0:
                    results["ours"] = results["databases"][kind]
                    results["ours"]["master_rss_mb"] = master_rss_mb(proc)
                    if args.explain:
                        results["explain"] = explain(proc, port, image, args.explain)
            finally:
                stop(proc)
        if peer_workers and not (model_dir / "model.keras").is_file():
            raise SystemExit(f"{model_dir}/model.keras is missing: the peer needs it")
        for workers in peer_workers:
            port = free_port()
            peer = start_peer(port, model_dir, workers)
            try:
                results["peers"][str(workers)] = measure(peer, port, body, args)
            finally:
                stop(peer)
    finally:
        scratch.cleanup()
        if server is not None:
            server.close()
    if args.venv_size:
        results["venv_mb"] = round(venv_size_mb())
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def report(r: dict) -> None:
    m = r["model"]
    print()
    print_header("gunicorn", "Flask", "LiteRT", "TensorFlow", "Keras")
    print(
        f"{m['architecture']} {m['input']} px, {m['quantization']} ({m['tflite_kb']} KiB), "
        f"upload: {r['upload']}; ours: {r['workers']} workers x {r['litert_threads']} LiteRT "
        f"thread(s), MALLOC_ARENA_MAX=2 {'on' if r['malloc_arena_max'] else 'off'}, "
        f"PIN_WORKERS {r['pin_workers']}; {r['requests']} requests at concurrency 1, "
        f"{r['seconds']:g} s at concurrency {r['concurrency']}"
    )
    rows = [
        ("p50 ms, concurrency 1", "p50_ms"),
        ("p95 ms, concurrency 1", "p95_ms"),
        ("p99 ms, concurrency 1", "p99_ms"),
        (f"requests/s, concurrency {r['concurrency']}", "rps"),
        ("worker peak RSS MB", "worker_peak_rss_mb"),
        ("master + workers peak RSS MB", "total_peak_rss_mb"),
    ]
    peers = r["peers"]
    names = ["ours"] + [f"tutorials {w}w" for w in peers]
    head = f"{'':<30}" + "".join(f"{n:>15}" for n in names)
    head += "".join(f"{'ours vs ' + w + 'w':>13}" for w in peers)
    print(head)
    for name, key in rows:
        ours = r["ours"][key]
        line = f"{name:<30}{ours:>15}" + "".join(f"{p[key]:>15}" for p in peers.values())
        for p in peers.values():
            ratio = ours / p[key] if key == "rps" else p[key] / ours
            line += f"{ratio:>12.1f}x"
        print(line)
    idle = "; ".join(
        f"{n}: {' / '.join(str(s) for s in x['cpu_idle_s'])}"
        for n, x in zip(names, [r["ours"], *peers.values()], strict=True)
    )
    print(f"CPU idle s under load, per CPU (whole machine, load client included): {idle}")
    print(
        f"load client: {r['ours']['load_client']}; our gunicorn master "
        f"{r['ours']['master_rss_mb']} MB; "
        "ratios: requests/s ours / theirs, the other rows theirs / ours"
    )
    for w, p in peers.items():
        fits = "fits" if p["total_peak_rss_mb"] <= 512 else "does not fit"
        print(
            f"tutorials' pattern, WEB_CONCURRENCY={w}: {p['workers']} worker(s), "
            f"{p['total_peak_rss_mb']} MB at peak: {fits} a 512 MB dyno"
        )
    if len(r["databases"]) > 1:
        print("ours by database (drift counts on; feedback on with a database):")
        print(f"{'':<30}" + "".join(f"{k:>12}" for k in r["databases"]))
        for name, key in rows:
            print(f"{name:<30}" + "".join(f"{d[key]:>12}" for d in r["databases"].values()))
    if "explain" in r:
        e = r["explain"]
        print(
            f"explain, {e['files_per_request']} files a request, 2 at a time: median "
            f"{e['median_ms']} ms, {e['rps']} requests/s, worker peak {e['worker_peak_rss_mb']} MB"
        )
    if "venv_mb" in r:
        print(f"fresh venv from requirements.txt: {r['venv_mb']} MB (Heroku's slug limit: 500 MB)")


if __name__ == "__main__":
    main()
