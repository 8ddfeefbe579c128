"""Serving speed and memory, ours side by side with the tutorials' pattern, in one run.

    python bench/serve.py [--model-dir saved_models] [--image FILE] [--workers 2]
    python bench/serve.py --make mobilenet_v2 --quantization int8 --explain 20
    python bench/serve.py --no-peer --databases none,sqlite,postgresql
    python bench/serve.py --model-dir DIR --no-peer --baseline-rev REV [--rounds 2]

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
and each CPU's idle seconds (PIN_WORKERS=0 in the environment turns our pinning off), and
the server's CPU milliseconds a request under that load. Before any server runs, the served
model's own LiteRT call on the upload's pixels is timed in this process (median wall and CPU
ms, one image a call on --threads threads, as a worker calls it), with decoding and resizing
the upload: the report gives our CPU a request as a multiple of the model's own.
--no-malloc-arena-max starts ours without the Procfile's MALLOC_ARENA_MAX=2.
--make ARCH exports a model at 224 px RGB into a temp folder instead (random weights whose
BatchNormalization statistics are set from photo-like images, so activations are well scaled
as in a trained network; cost, not accuracy), as the export stage serves it: logits and
pooled features, a temperature and an out-of-distribution detector fitted on those 64 images
(ood.npz); quantized as --quantization says, it waits --settle seconds (see main) and sends a
500x375 photo-like JPEG. --image sends your file. --explain N adds N explain requests;
--databases runs ours once per database (none: no drift counts or feedback; sqlite;
postgresql: a throwaway server unless --database-url); --venv-size measures a fresh virtual
environment from requirements.txt (the slug's bulk).
--baseline-rev REV serves git revision REV's code as a peer (Baseline): checked out in a
temporary worktree, started as its own Procfile says from there with its src/ on PYTHONPATH
(the script checks which webapp and image_classifier files each server imports), serving its
own export of the same Keras model: with --make, REV's code exports --make's model.keras from
the same images; otherwise REV's export stage runs on --model-dir's model.keras in a copy of
the project holding --model-dir (its data/prepared, its params.yaml without the keys REV
does not know or whose values it rejects), unless --baseline-model-dir names REV's export.
Ours and REV's, with the first database, are measured --rounds times each, one after the
other, alternating which goes first; the script prints every round, the medians and new /
old, and for each measurement the load average before it and the CPU seconds other
processes took during it. Then each side's model file alone, timed in this process as above
on the same pixels right after ours (the network's own share of the difference), and ours
with what a worker does to the call's output (Classifier.run: the calibrated softmax and the
out-of-distribution verdict).
--wait-load L waits before each measurement until the 1-minute load average is below L.
Every request goes to 127.0.0.1 only and the loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
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
import dataclasses
import sys
from pathlib import Path
import keras
import numpy as np
from image_classifier import atomic, export, synthetic
from image_classifier.evaluation import calibration
from image_classifier.litert import quantize
from image_classifier.litert.classifier import Classifier, ModelCard
from image_classifier.params import parse_params
from image_classifier.preprocessing import PREPROCESSING_VERSION
from image_classifier.training import models, served_graph

arch, mode, out, pixels = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
raw = {"image": {"size": 224, "color_mode": "rgb"}, "train": {"model": arch, "weights": None}}
raw["export"] = {"quantization": mode}
params = parse_params(raw)
classes = [f"c{i}" for i in range(10)]
model = models.build_model(len(classes), params.image, params.train)
spec = synthetic.Spec((10,) * 10, seed=99)
photos = [synthetic.render(i % 10, i, spec).resize((224, 224)) for i in range(64)]
x = np.stack([np.asarray(p, dtype="float32") for p in photos])
labels = np.arange(len(x)) % 10
for layer in model.layers + models.find_base(model).layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.0  # moving statistics := this batch's
model(x, training=True)
model.save(out / "model.keras")
np.save(pixels, x.astype(np.uint8))  # whole numbers: the same images for another export
float_model = served_graph.convert(model)
tflite = quantize.quantize(float_model, mode, [x[:32], x[32:]])
# Calibrated and given a detector as the export stage does, on these images (no other split).
card = ModelCard(
    tuple(classes), 224, "rgb", PREPROCESSING_VERSION, early_width=served_graph.early_width(model)
)
lite = Classifier(tflite, card).run(x)
temperature = calibration.fit_temperature(lite.logits, labels)
detector = export.fit_detector(params.ood, lite, labels, lite, temperature)
served = Classifier(tflite, dataclasses.replace(card, temperature=temperature), detector=detector)
check = {"max_prob_diff": None, "top1_agreement": None, "n_images": 0}
card = export.model_card(classes, params, tflite, {}, check)
widths = export.output_widths(served.run(x))
card.update(export.served_fields(widths, temperature, len(x), detector, params.ood))
atomic.write_bytes(out / "ood.npz", export.npz_bytes(detector.arrays))
atomic.write_bytes(out / "model.tflite", tflite)
atomic.write_json(out / "model.json", card)
"""


def make_model(arch: str, quantization: str, out: Path, pixels: Path) -> Path:
    """Export `arch` at 224 px RGB (see the module docstring) into `out`; the images its int8
    ranges and detector come from go to `pixels` (.npy), for the baseline's export."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run_checked(
        [sys.executable, "-c", MAKE_SCRIPT, arch, quantization, str(out), str(pixels)], env=env
    )
    return out


def run_checked(cmd: list[str], **kwargs) -> str:
    """Run `cmd`; on failure, exit with the end of its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise SystemExit(
            f"{' '.join(cmd[:3])} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


# The baseline's export of --make's model, run with that revision's code (PYTHONPATH): the
# same model.keras and calibration images, exported as that code's export did before the
# served model returned features (`export.to_tflite` of the softmax model, its model card).
BASELINE_MAKE_SCRIPT = """
import sys
from pathlib import Path
import keras
import numpy as np
from image_classifier import atomic, export
from image_classifier.litert import quantize
from image_classifier.params import parse_params

arch, mode = sys.argv[1], sys.argv[2]
keras_file, pixels, out = Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
raw = {"image": {"size": 224, "color_mode": "rgb"}, "train": {"model": arch, "weights": None}}
raw["export"] = {"quantization": mode}
params = parse_params(raw)
classes = [f"c{i}" for i in range(10)]
model = keras.models.load_model(keras_file)
x = np.load(pixels).astype(np.float32)
float_model = export.to_tflite(model)
tflite = quantize.quantize(float_model, mode, [x[:32], x[32:]])
check = {"max_prob_diff": None, "top1_agreement": None, "n_images": 0}
atomic.write_bytes(out / "model.tflite", tflite)
atomic.write_json(out / "model.json", export.model_card(classes, params, tflite, {}, check))
"""

# params.yaml for the baseline's export stage: the keys that revision's Params knows (a later
# section such as `ood` fails its parsing) with values it accepts (a later `train.epochs:
# auto` is left to its default), as YAML on stdout; each key left out on stderr.
PARAMS_FILTER = """
import dataclasses, sys, yaml
from image_classifier.params import Params, ParamsError, parse_params

def known(raw, default, prefix=""):
    out = {}
    for key, value in raw.items():
        if key not in default:
            print(f"{prefix}{key}", file=sys.stderr)
        elif isinstance(default[key], dict) and isinstance(value, dict):
            out[key] = known(value, default[key], f"{prefix}{key}.")
        else:
            out[key] = value
    return out

def drop(raw, dotted):
    *sections, key = dotted.split(".")
    for section in sections:
        raw = raw.get(section, {})
    return raw.pop(key, None) is not None

kept = known(yaml.safe_load(sys.stdin.read()) or {}, dataclasses.asdict(Params()))
while True:
    try:
        parse_params(kept)
        break
    except ParamsError as exc:
        key = str(exc).split(":")[0]
        if not drop(kept, key):
            raise
        print(key, file=sys.stderr)
sys.stdout.write(yaml.safe_dump(kept, sort_keys=False))
"""

# The files a server started in the working directory with this environment imports:
# gunicorn puts its working directory, then the Procfile's --pythonpath (src), first on
# sys.path; PYTHONPATH comes before the venv's editable install of this checkout's src/.
ORIGIN_SCRIPT = """
import os, sys
sys.path[:0] = [os.path.abspath("src"), os.getcwd()]
import image_classifier, webapp
print(webapp.__file__)
print(image_classifier.__file__)
"""


def git(*args: str, cwd: Path = ROOT) -> str:
    return run_checked(["git", "-C", str(cwd), *args]).strip()


class Baseline:
    """Another revision of this repository (--baseline-rev) as a peer: its code checked out in
    a temporary git worktree (removed by close()), its own export of the same Keras model and
    its own server, started as its Procfile says from the worktree with the worktree's src/ on
    PYTHONPATH, so that neither this checkout's files nor the venv's editable install of them
    are imported (code_origin checks)."""

    def __init__(self, rev: str) -> None:
        self.rev = rev
        self.params_left_out: list[str] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
        self.tree = self._tmp / "tree"
        git("worktree", "add", "--detach", str(self.tree), rev)
        self.commit = git("rev-parse", "--short=8", "HEAD", cwd=self.tree)
        self.src = self.tree / "src"

    def env(self, **extra: str) -> dict[str, str]:
        return env_with_venv(PYTHONPATH=str(self.src), TF_CPP_MIN_LOG_LEVEL="2", **extra)

    def make_model(self, arch: str, quantization: str, made: Path, pixels: Path, out: Path) -> Path:
        """--make's model (made/model.keras; its images `pixels`) exported by this revision."""
        out.mkdir(parents=True)
        args = [arch, quantization, str(made / "model.keras"), str(pixels), str(out)]
        run_checked([sys.executable, "-c", BASELINE_MAKE_SCRIPT, *args], env=self.env())
        return out

    def export_stage(self, model_dir: Path, work: Path) -> Path:
        """This revision's export stage (`python -m image_classifier.export`) on the Keras
        model in `model_dir` (model.keras, classes.json), run in a new project folder `work`
        that links the data/prepared of the project holding `model_dir` and has its
        params.yaml (the keys this revision knows). Returns the folder it exported into."""
        project = model_dir.resolve().parent
        for need in (project / "data/prepared", project / "params.yaml"):
            if not need.exists():
                raise SystemExit(
                    f"{need} is missing: the baseline's export stage runs on the project of "
                    f"{model_dir} (or give --baseline-model-dir)"
                )
        (work / "data").mkdir(parents=True)
        (work / "data/prepared").symlink_to(project / "data/prepared")
        models = work / "saved_models"
        models.mkdir()
        for name in ("model.keras", "classes.json"):
            (models / name).symlink_to(model_dir.resolve() / name)
        filtered = subprocess.run(
            [sys.executable, "-c", PARAMS_FILTER],
            input=(project / "params.yaml").read_text(encoding="utf-8"),
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=work,
        )
        if filtered.returncode:
            raise SystemExit(f"params.yaml for {self.rev}: {filtered.stderr[-3000:]}")
        (work / "params.yaml").write_text(filtered.stdout, encoding="utf-8")
        self.params_left_out = filtered.stderr.split()
        run_checked([sys.executable, "-m", "image_classifier.export"], cwd=work, env=self.env())
        return models

    def close(self) -> None:
        for cmd in (["worktree", "remove", "--force", str(self.tree)], ["worktree", "prune"]):
            subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True)
        shutil.rmtree(self._tmp, ignore_errors=True)


def code_origin(root: Path, pythonpath: Path | None = None) -> dict[str, str]:
    """The webapp and image_classifier files a server in `root` imports (ORIGIN_SCRIPT); exits
    if either comes from outside `root`."""
    env = env_with_venv(**({"PYTHONPATH": str(pythonpath)} if pythonpath else {}))
    out = run_checked([sys.executable, "-c", ORIGIN_SCRIPT], cwd=root, env=env).split()
    origin = {"webapp": out[-2], "image_classifier": out[-1]}
    for name, file in origin.items():
        if not Path(file).resolve().is_relative_to(root.resolve()):
            raise SystemExit(f"a server in {root} would import {name} from {file}")
    return origin


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
    root: Path = ROOT,
    pythonpath: Path | None = None,
) -> subprocess.Popen:
    """`root`'s server (this checkout's, or a Baseline's worktree with its src/ as
    `pythonpath`), started as its Procfile says, from `root`."""
    env = env_with_venv(
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        LITERT_THREADS=str(threads),
        MODEL_DIR=str(model_dir.resolve()),
        REPORTS_DIR=str(Path(database["PARAMS_FILE"]).parent),  # none needed to predict
        **database,
        **({"PYTHONPATH": str(pythonpath)} if pythonpath else {}),
    )
    cmd = (root / "Procfile").read_text().split("web:", 1)[1].strip()
    if not arena_limit:
        if ARENA not in cmd:
            raise SystemExit(f"the Procfile does not set {ARENA.strip()}: {cmd}")
        cmd = cmd.replace(ARENA, "")
    proc = subprocess.Popen(
        cmd,
        shell=True,
        cwd=root,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_ready(proc, port, "our server" if root == ROOT else f"the server in {root}")


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


def server_cpu_s(proc: subprocess.Popen) -> float:
    """CPU seconds the server has used: master, living workers and the workers it reaped."""
    master = _master(proc)
    t = master.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for worker in master.children():
        with contextlib.suppress(psutil.Error):
            w = worker.cpu_times()
            total += w.user + w.system
    return total


class CpuShare:
    """During a block: the server's CPU seconds (.server), and the machine's CPU seconds on
    anything but the server, this script and its children such as ab (.other): other jobs
    that took cores from the measurement. Interrupt time is in neither."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.server, self.other = proc, 0.0, 0.0

    def _sample(self) -> tuple[float, float, float]:
        c, me = psutil.cpu_times(), os.times()
        mine = me.user + me.system + me.children_user + me.children_system
        return c.user + c.nice + c.system, server_cpu_s(self.proc), mine

    def __enter__(self) -> CpuShare:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, server, mine = (b - a for a, b in zip(self._start, self._sample(), strict=True))
        self.server, self.other = server, max(0.0, busy - server - mine)


def measure(proc: subprocess.Popen, port: int, body: bytes, args) -> dict:
    """Latency at concurrency 1, throughput at args.concurrency, workers' memory; the load
    average before, the server's CPU milliseconds a request under load, and other processes'
    CPU seconds during both phases."""
    for _ in range(20):  # warm-up: every worker has served a few
        post(port, body)
    load_before = round(os.getloadavg()[0], 2)
    start = time.perf_counter()
    with CpuShare(proc) as latency_cpu:
        if shutil.which("ab"):  # a C client: its own overhead barely shows in the latency
            _, pct = run_ab(port, body, 1, "-n", str(args.requests))
            p50, p95, p99 = pct[50], pct[95], pct[99]
        else:
            latencies = sorted(post(port, body) * 1000 for _ in range(args.requests))
            q = statistics.quantiles(latencies, n=100)
            p50, p95, p99 = statistics.median(latencies), q[94], q[98]
    idle_before = [c.idle for c in psutil.cpu_times(percpu=True)]
    loaded = time.perf_counter()
    with PeakRss(proc) as load, CpuShare(proc) as load_cpu:
        rps, client = throughput(port, body, args.concurrency, args.seconds)
    requests = rps * (time.perf_counter() - loaded)
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
        "load_1min_before": load_before,
        "server_cpu_ms_per_request": round(1000 * load_cpu.server / max(requests, 1), 3),
        "other_cpu_s": round(latency_cpu.other + load_cpu.other, 2),
        "measured_s": round(time.perf_counter() - start, 1),
    }


def model_alone(
    model_dir: Path, image: bytes, threads: int, repeats: int = 300, served: bool = True
) -> dict:
    """The served model's own cost for this upload, in this process, before any server runs:
    the median wall and CPU milliseconds of one LiteRT call on its pixels (Runner, `threads`
    threads, one image a call, as a worker runs it), and of decoding and resizing the upload
    (preprocessing.decode_pixels, the app's function). With `served`, also the CPU of
    Classifier.run, the call with what a worker does to its output (the calibrated softmax
    and the out-of-distribution verdict): for this checkout's own export only."""
    sys.path.insert(0, str(ROOT / "src"))
    from image_classifier.litert.classifier import Classifier
    from image_classifier.litert.runner import Runner
    from image_classifier.preprocessing import decode_pixels

    card = json.loads((model_dir / "model.json").read_text())
    size, mode = card["input"]["size"], card["input"]["color_mode"]
    pixels = decode_pixels(image, size, mode)[None].astype("float32")
    runner = Runner(model_dir / "model.tflite", threads, max_batch=1)

    def timed(work) -> tuple[float, float]:
        for _ in range(20):
            work()
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            work()
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
        return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)

    invoke_ms, invoke_cpu_ms = timed(lambda: runner(pixels))
    decode_ms, _ = timed(lambda: decode_pixels(image, size, mode))
    figures = {
        "invoke_ms": round(invoke_ms, 3),
        "invoke_cpu_ms": round(invoke_cpu_ms, 3),
        "decode_ms": round(decode_ms, 3),
    }
    if served:
        clf = Classifier.from_dir(model_dir, threads, max_batch=1)
        figures["run_cpu_ms"] = round(timed(lambda: clf.run(pixels))[1], 3)
    return figures


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


class QuietWait:
    """--wait-load: before each measurement, wait until the machine's 1-minute load average is
    below `limit`, looking every 15 s, for at most `budget` seconds over the whole run (then
    it measures anyway, and says so)."""

    def __init__(self, limit: float | None, budget: float) -> None:
        self.limit, self.budget, self.waited = limit, budget, 0.0

    def __call__(self) -> None:
        if self.limit is None:
            return
        while os.getloadavg()[0] >= self.limit and self.waited < self.budget:
            time.sleep(15)
            self.waited += 15
        load = os.getloadavg()[0]
        if load >= self.limit:
            print(f"load average {load:.2f} after {self.waited:.0f} s of waiting: measuring anyway")


def answer(port: int, body: bytes) -> dict:
    """One prediction's JSON, to show which code answered (its fields)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        "/api/v1/predict",
        body,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data["predictions"][0]


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
        "the first is compared with the peers and the baseline)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL for the postgresql entry (default: a throwaway server started with "
        "initdb, as the tests do; needs Debian's postgresql package)",
    )
    parser.add_argument(
        "--baseline-rev",
        metavar="REV",
        help="also serve git revision REV's code (a temporary worktree) with its own export of "
        "the same model, and compare (see the module docstring)",
    )
    parser.add_argument(
        "--baseline-model-dir",
        type=Path,
        help="with --baseline-rev: REV's export of the model, instead of exporting it here",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="with --baseline-rev: measurements of each side, alternating which goes first",
    )
    parser.add_argument(
        "--wait-load",
        type=float,
        metavar="L",
        help="before each measurement, wait until the 1-minute load average is below L",
    )
    parser.add_argument(
        "--wait-max", type=float, default=2400.0, help="--wait-load's limit over the run, s"
    )
    args = parser.parse_args()
    peer_workers = [] if args.no_peer else [int(w) for w in args.peer_workers.split(",") if w]
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("gunicorn is not installed in this environment (make venv)")
    kinds = [k for k in args.databases.split(",") if k]
    if not kinds or set(kinds) - {"none", "sqlite", "postgresql"}:
        raise SystemExit(f"--databases: expected none, sqlite or postgresql, got {args.databases}")
    if args.baseline_rev and kinds[0] == "postgresql" and args.database_url:
        raise SystemExit("--baseline-rev needs a database of its own: not with --database-url")
    scratch = tempfile.TemporaryDirectory()
    tmp = Path(scratch.name)
    baseline = server = None
    try:
        if args.baseline_rev:
            baseline = Baseline(args.baseline_rev)
        model_dir, old_dir = args.model_dir, args.baseline_model_dir
        if args.make:
            pixels = tmp / "pixels.npy"
            model_dir = make_model(args.make, args.quantization, tmp / "model", pixels)
            if baseline and old_dir is None:
                old_dir = baseline.make_model(
                    args.make, args.quantization, model_dir, pixels, tmp / "baseline-model"
                )
            # Measured here: right after the TensorFlow process that made the model exits,
            # the same server does ~5 % fewer requests/s for about half a minute (MobileNetV2
            # int8: 298 and 308 at once, 312 and 317 after 30 s); a CPU burn of the same
            # length leaves no such trace. Not part of what is measured, so it is waited out.
            time.sleep(args.settle)
        elif baseline and old_dir is None:
            old_dir = baseline.export_stage(model_dir, tmp / "baseline-project")
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
            "databases": {},
            "model_alone": model_alone(model_dir, image, args.threads),
        }
        # Right after ours, on the same pixels: the two networks' cost, apart from serving.
        old_alone = model_alone(old_dir, image, args.threads, served=False) if baseline else None
        postgres_url = args.database_url or ""
        if "postgresql" in kinds and not postgres_url:
            sys.path.insert(0, str(ROOT / "tests"))
            from postgres import PostgresServer

            server = PostgresServer()
            postgres_url = server.create_database()
        quiet = QuietWait(args.wait_load, args.wait_max)

        def serve(database: dict, model: Path, code: Baseline | None = None, first=False) -> dict:
            quiet()
            port = free_port()
            root, src = (code.tree, code.src) if code else (ROOT, None)
            proc = start_ours(
                port,
                args.workers,
                args.threads,
                database,
                model,
                arena_limit=not args.no_malloc_arena_max,
                root=root,
                pythonpath=src,
            )
            try:
                figures = measure(proc, port, body, args)
                figures["master_rss_mb"] = master_rss_mb(proc)
                figures["answer_fields"] = sorted(answer(port, body))
                if first and args.explain:
                    results["explain"] = explain(proc, port, image, args.explain)
            finally:
                stop(proc)
            return figures

        for n, kind in enumerate(kinds):
            database = database_env(kind, tmp, postgres_url)
            if n == 0 and baseline:
                (tmp / "baseline-db").mkdir()
                old_url = server.create_database() if kind == "postgresql" else ""
                old_database = database_env(kind, tmp / "baseline-db", old_url)
                rounds = []
                for r in range(args.rounds):
                    runs = {}
                    for side in ("new", "old") if r % 2 == 0 else ("old", "new"):
                        if side == "new":
                            runs["new"] = serve(database, model_dir, first=not rounds)
                        else:
                            runs["old"] = serve(old_database, old_dir, baseline)
                    rounds.append({"new": runs["new"], "old": runs["old"]})
                results["databases"][kind] = rounds[0]["new"]
                results["baseline"] = {
                    "rev": baseline.rev,
                    "commit": baseline.commit,
                    "ours": git("describe", "--always", "--dirty", "--abbrev=8"),
                    "origin": {
                        "new": code_origin(ROOT),
                        "old": code_origin(baseline.tree, baseline.src),
                    },
                    "tflite_kb": {
                        "new": results["model"]["tflite_kb"],
                        "old": round((old_dir / "model.tflite").stat().st_size / 1024),
                    },
                    "params_left_out": baseline.params_left_out,
                    "model_alone": {
                        "new": results["model_alone"],
                        "old": old_alone,
                    },
                    "rounds": rounds,
                }
            else:
                results["databases"][kind] = serve(database, model_dir, first=n == 0)
            if n == 0:
                results["ours"] = results["databases"][kind]
        if peer_workers and not (model_dir / "model.keras").is_file():
            raise SystemExit(f"{model_dir}/model.keras is missing: the peer needs it")
        for workers in peer_workers:
            quiet()
            port = free_port()
            peer = start_peer(port, model_dir, workers)
            try:
                results["peers"][str(workers)] = measure(peer, port, body, args)
            finally:
                stop(peer)
    finally:
        if baseline is not None:
            baseline.close()
        scratch.cleanup()
        if server is not None:
            server.close()
    if args.venv_size:
        results["venv_mb"] = round(venv_size_mb())
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


ROWS = [
    ("p50 ms, concurrency 1", "p50_ms"),
    ("p95 ms, concurrency 1", "p95_ms"),
    ("p99 ms, concurrency 1", "p99_ms"),
    ("requests/s, concurrency {concurrency}", "rps"),
    ("server CPU ms a request, loaded", "server_cpu_ms_per_request"),
    ("worker peak RSS MB", "worker_peak_rss_mb"),
    ("master + workers peak RSS MB", "total_peak_rss_mb"),
]


def report_baseline(r: dict) -> None:
    """The baseline comparison: every round of each side, the medians and new / old."""
    b = r["baseline"]
    rounds = b["rounds"]
    print(
        f"this checkout ({b['ours']}) vs {b['rev']} ({b['commit']}): the same upload and load, "
        f"one server after the other, {len(rounds)} round(s), the first side alternating "
        f"(new first in round 1); model file new {b['tflite_kb']['new']} KiB, old "
        f"{b['tflite_kb']['old']} KiB"
    )
    extra = [("load average before", "load_1min_before"), ("other processes' CPU s", "other_cpu_s")]
    rows = ROWS
    cols = [f"{side} {i + 1}" for i in range(len(rounds)) for side in ("new", "old")]
    print(
        f"{'':<30}"
        + "".join(f"{c:>9}" for c in cols)
        + f"{'new med':>10}{'old med':>10}{'new/old':>9}"
    )
    for name, key in rows + extra:
        values = [rnd[side][key] for rnd in rounds for side in ("new", "old")]
        new = statistics.median(rnd["new"][key] for rnd in rounds)
        old = statistics.median(rnd["old"][key] for rnd in rounds)
        line = f"{name.format(**r):<30}" + "".join(f"{v:>9}" for v in values)
        line += f"{round(new, 2):>10}{round(old, 2):>10}"
        if key not in dict(extra).values() and old:
            line += f"{new / old:>9.3f}"
        print(line)
    print(
        "new/old: above 1, the new code takes longer or holds more memory; for requests/s, "
        "below 1, it serves fewer"
    )
    for side in ("new", "old"):
        o = b["origin"][side]
        print(
            f"{side}: imports {o['webapp']} and {o['image_classifier']}; answers with "
            f"{', '.join(rounds[0][side]['answer_fields'])}"
        )
    new, old = b["model_alone"]["new"], b["model_alone"]["old"]
    print(
        f"each side's model file alone, in this process (invoke CPU, median): new "
        f"{new['invoke_cpu_ms']} ms, old {old['invoke_cpu_ms']} ms, new/old "
        f"{new['invoke_cpu_ms'] / old['invoke_cpu_ms']:.3f}; new with what a worker does to the "
        f"output (softmax, the verdict; Classifier.run) {new['run_cpu_ms']} ms, "
        f"{1000 * (new['run_cpu_ms'] - new['invoke_cpu_ms']):.0f} us after the call"
    )
    if b["params_left_out"]:
        print(
            f"params.yaml keys {b['rev']} does not know or accept, left out of its export: "
            f"{', '.join(b['params_left_out'])}"
        )


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
    rows = [(name.format(**r), key) for name, key in ROWS]
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
    alone = r["model_alone"]
    per_request = r["ours"]["server_cpu_ms_per_request"]
    print(
        f"the model alone on this upload's pixels ({r['litert_threads']} LiteRT thread(s), one "
        f"image a call, median): invoke {alone['invoke_ms']} ms, CPU {alone['invoke_cpu_ms']} "
        f"ms; decoding and resizing the upload {alone['decode_ms']} ms"
    )
    print(
        f"ours under load: server CPU {per_request} ms a request = "
        f"{per_request / alone['invoke_cpu_ms']:.2f}x the model's own invoke CPU"
    )
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
    if "baseline" in r:
        report_baseline(r)
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
