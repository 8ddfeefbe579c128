"""The pipeline on realistic data, side by side with the Keras guide's pattern, in one run.

    python bench/scale.py --images 5000 [--size 224] [--epochs 1] [--data-dir DIR] [--no-peer]
                          [--peers tutorial,cached] [--quantization none|float16|dynamic|int8]
                          [--op-determinism] [--shards N]

1. Generates (or reuses, in --data-dir) a seeded synthetic photo dataset: 10 classes,
   ~500x375 JPEGs of varied shapes and colours (image_classifier.synthetic).
2. Writes a local MobileNetV2 weights file (ImageNet weights cannot be downloaded here; the
   loading path is the same).
3. Builds a fresh workspace from the package's code and pipeline (tests/fork.py: no `sample`
   stage, params.yaml of its own; the repository's params.yaml and data/ are never read),
   follows the README's "your own images" steps (images in data/raw, `dvc add data/raw`)
   with image.size 224, rgb, frozen MobileNetV2, batch 32, 1 epoch (train.op_determinism
   true with --op-determinism), and runs `dvc repro`, sampling every stage's process tree
   (stage process plus its workers) for wall time and peak resident memory; each stage
   process also logs its own exact peak (timing.log_peak), printed beside it. A stage's
   peak is the larger of the two: sampling once a second can miss a short peak of the
   stage's own process, and its own peak leaves out its workers. With
   --shards N, data/raw holds the photos packed into zip shards of N (`python -m
   image_classifier.pack`, timed) instead of class folders.
4. Runs bench/keras_guide_peer.py on the same images, weights file and epochs, measured the
   same way, once per --peers entry: `tutorial` is TensorFlow's MobileNetV2 transfer-learning
   tutorial (image_dataset_from_directory -> prefetch, no cache), `cached` the same with
   .cache() before prefetch (every decoded image kept as float32).
5. Measures decode throughput (prepare's decoder) on 1 core and on all cores.
6. The floor, from rates measured in this run on its own data and every core: the split's
   scan (content and perceptual hashes, header) of --decode-sample photos, the decoder's rate
   above, and LiteRT's forward pass of the trained base as phase 1 runs it (train's own
   conversion, saved_models/served_graph.tflite, cut at the features) on --forward-sample
   stored images: every photo scanned and decoded once, and a forward pass for each training
   image every epoch and each validation and test image once. The whole `dvc repro` is
   printed against it (for a frozen base that phase 1 ran on LiteRT; else no floor).
Prints one table, headed by the machine; --json FILE also saves the figures, and
`--compare SMALL.json LARGE.json` prints two saved runs side by side with the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from machine import print_header

import fork
from stage_log import stage_peaks, stage_phases

ROOT = Path(__file__).resolve().parents[1]
PEERS = {"tutorial": [], "cached": ["--cache"]}  # keras_guide_peer.py's flags
STAGES = ("split", "prepare", "train", "evaluate", "export", "audit")


class TreeSampler:
    """Polls a process tree every `interval` s: per-label wall time and peak RSS (summed over
    the labelled process and its descendants, so a stage's worker processes count too). Once
    a second: polling /proc every 0.1 or 0.5 s halved LiteRT's forward rate in the stages it
    measured on this machine, so a memory peak shorter than that can be missed (run_measured
    also reports the kernel's exact per-process peak). Wall times are exact all the same: a
    labelled process's start is its creation time, and a thread per labelled process waits
    for its end by signal 0 (os.kill), which reads nothing from /proc."""

    def __init__(self, root_pid: int, label_of, started: float, interval: float = 1.0) -> None:
        """`started`: time.perf_counter() when the root process was started."""
        self.root = psutil.Process(root_pid)
        self.started = started
        self.label_of = label_of
        self.interval = interval
        self.stats: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._watchers: list[threading.Thread] = []

    def _poll(self) -> None:
        """One pass: a single walk of the tree (psutil scans /proc for it), so sampling costs
        little CPU next to the stages it measures."""
        now = time.perf_counter()
        info = {}
        with contextlib.suppress(psutil.Error):
            for proc in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    info[proc.pid] = (proc.ppid(), proc.memory_info().rss, proc.cmdline())
        for pid, (_, _, cmdline) in info.items():
            label = self.label_of(cmdline)
            if label is None:
                continue
            total = 0
            for other, (_, rss, _) in info.items():
                walk = other
                while walk in info and walk != pid:
                    walk = info[walk][0]
                total += rss if walk == pid else 0
            if label not in self.stats:
                self.stats[label] = {"start": now, "end": now, "peak_rss": 0}
                self._watch(pid, self.stats[label], now)
            stat = self.stats[label]
            stat["peak_rss"] = max(stat["peak_rss"], total)

    def _watch(self, pid: int, stat: dict, now: float) -> None:
        """Set stat's start from the process's creation time, and its end when it exits."""
        with contextlib.suppress(psutil.Error):
            # Creation times relative to the root's: both carry the same error of the boot
            # time psutil adds (whole seconds).
            since_root = psutil.Process(pid).create_time() - self.root.create_time()
            stat["start"] = self.started + since_root

        def wait() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                while True:
                    os.kill(pid, 0)
                    time.sleep(0.02)
            stat["end"] = time.perf_counter()

        watcher = threading.Thread(target=wait, daemon=True)
        watcher.start()
        self._watchers.append(watcher)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for watcher in self._watchers:
            watcher.join()


def stage_label(cmdline: list[str]) -> str | None:
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "-m" and cmdline[i + 1].startswith("image_classifier."):
            return cmdline[i + 1].split(".", 1)[1]
    return None


def peer_label(cmdline: list[str]) -> str | None:
    return "peer" if len(cmdline) > 1 and cmdline[1].endswith("keras_guide_peer.py") else None


def env() -> dict[str, str]:
    return {**fork.env(), "TF_CPP_MIN_LOG_LEVEL": "2"}


# Runs a command and writes the largest peak RSS (KiB) of any process under it, which the
# kernel keeps exactly (RUSAGE_CHILDREN, every descendant waited for).
PEAK_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def run_measured(cmd: list[str], cwd: Path, label_of, log: Path) -> tuple[float, dict]:
    """Wall time and, per label, the sampled stats; stats["largest_process_mb"] is the
    kernel's peak of the largest single process."""
    start = time.perf_counter()
    peak_file = log.with_suffix(".peak")
    wrapped = [sys.executable, "-c", PEAK_WRAPPER, str(peak_file), *cmd]
    with log.open("w") as out:
        proc = subprocess.Popen(wrapped, cwd=cwd, env=env(), stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(proc.pid, label_of, start) as sampler:
            code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        # The workspace (and this log) is a temporary folder, gone once we exit: show the end.
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"{' '.join(cmd)} failed ({code}); the end of its log:\n{tail}")
    return wall, {**sampler.stats, "largest_process_mb": int(peak_file.read_text()) / 1024}


def make_dataset(images: int, data_dir: Path) -> Path:
    from image_classifier.synthetic import Spec, balanced, write_dataset

    target = data_dir / f"photos-{images}"
    if (target / ".complete").is_file():
        print(f"reusing {target}")
        return target
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    write_dataset(target, Spec(balanced(images, 10), seed=0, fmt="JPEG"))
    (target / ".complete").write_text("")
    print(f"generated {images} JPEGs in {time.perf_counter() - start:.0f} s: {target}")
    return target


WEIGHTS_SCRIPT = """
import sys
import keras
import numpy as np
from image_classifier.synthetic import Spec, render

path, size = sys.argv[1], int(sys.argv[2])
spec = Spec((10,) * 10, seed=99)  # calibration images, not the benchmark's own
pixels = [render(i % 10, i, spec).resize((size, size)) for i in range(64)]
x = np.stack([np.asarray(p, dtype="float32") for p in pixels]) / 127.5 - 1
base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(size, size, 3))
for layer in base.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.0  # moving statistics := this batch's
base(x, training=True)
base.save_weights(path)
"""


def make_weights(path: Path, size: int) -> None:
    """A MobileNetV2 base weights file standing in for ImageNet's (not downloadable here).

    Random weights alone make activations vanish layer by layer (features ~1e-11, chance
    accuracy, and unrepresentative kernel speeds); setting every BatchNormalization's moving
    statistics from one batch of photo-like images gives well-scaled random features, as a
    trained network has."""
    cmd = [sys.executable, "-c", WEIGHTS_SCRIPT, str(path), str(size)]
    subprocess.run(cmd, env={**env(), "PYTHONPATH": str(ROOT / "src")}, check=True)


def sha256sum(folder: Path | str) -> str:
    return f"find '{folder}' -type f -print0 | xargs -0 sha256sum > /dev/null"


SHA256SUM = sha256sum("data/raw")


def make_workspace(
    work: Path, photos: Path, weights: Path | None, args, params: dict | None = None
) -> tuple[Path, dict]:
    """The package's code and pipeline (no `sample` stage) with params.yaml of its own, the
    photos in data/raw tracked by `dvc add`, committed; `params` overrides the settings below.
    Nothing is read from the repository's params.yaml, data/ or .dvc/config: they belong to
    whoever forked it. Returns the workspace and the timings of packing and tracking."""
    repo = work / "repo"
    repo.mkdir()
    settings = {
        "image": {"size": args.size, "color_mode": "rgb"},
        "export": {"quantization": args.quantization},
        "train": {
            "model": "mobilenet_v2",
            "weights": None if weights is None else str(weights),
            "fine_tune_layers": 0,
            "batch_size": 32,
            "epochs": args.epochs,
            # exactly --epochs, like the peer (the default adds epochs for small data)
            "min_steps": 0,
            "op_determinism": args.op_determinism,
        },
    }
    fork.copy_project(repo, fork.merge(settings, params or {}))
    timings = {}
    if args.shards:
        pack = [sys.executable, "-m", "image_classifier.pack", str(photos), "data/raw"]
        start = time.perf_counter()
        subprocess.run([*pack, "--per-shard", str(args.shards)], cwd=repo, env=env(), check=True)
        timings["pack_s"] = round(time.perf_counter() - start, 2)
    else:
        # Hard links: the same files as the peer reads, without copying a gigabyte.
        shutil.copytree(photos, repo / "data" / "raw", copy_function=os.link)
    # README "Your own images": `dvc add data/raw` (the pipeline has no `sample` stage to
    # remove). Without it the photos would go into git, and the commit's `git gc --auto`
    # would repack them on one core while the stages are timed.
    for label, cmd in (
        (None, ["git", "config", "gc.auto", "0"]),
        # The peer of `dvc add`: the photos hashed by coreutils on one core, just before.
        ("sha256sum_s", ["sh", "-c", sha256sum(photos)]),
        ("dvc_add_s", ["dvc", "add", "data/raw"]),
        (None, ["git", "add", "-A"]),
        (None, ["git", "commit", "-qm", "bench workspace"]),
    ):  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, cwd=repo, env=env(), check=True, capture_output=True)
        if label:
            timings[label] = round(time.perf_counter() - start, 2)
    return repo, timings


def disk_usage(repo: Path) -> dict[str, int]:
    """Bytes allocated under data/raw, data/prepared and .dvc/cache, each folder alone, and
    all three with every inode counted once (a file hard-linked into the cache is on disk
    once, as `du` counts it)."""
    sizes: dict[int, int] = {}
    out = {}
    for name in ("data/raw", "data/prepared", ".dvc/cache"):
        own: dict[int, int] = {}
        for path in (repo / name).rglob("*"):
            st = path.lstat()
            if not path.is_symlink() and path.is_file():
                own[st.st_ino] = st.st_blocks * 512
        out[name] = sum(own.values())
        sizes |= own
    out["total"] = sum(sizes.values())
    return out


def decode_throughput(repo: Path, size: int, limit: int) -> dict[int, float]:
    """Images/s of prepare's decoder on the first `limit` training images, 1 and all cores."""
    sys.path.insert(0, str(repo / "src"))
    from image_classifier.data.manifests import read_manifest
    from image_classifier.data.parallel import default_workers
    from image_classifier.data.store_writer import DecodeSettings, decode_rows
    from image_classifier.preprocessing import MAX_PIXELS

    cwd = Path.cwd()
    os.chdir(repo)
    try:
        rows = read_manifest(Path("data/splits/train.csv"))[:limit]
        settings = DecodeSettings(size, "rgb", MAX_PIXELS)
        out = {}
        for workers in sorted({1, default_workers()}):
            with tempfile.TemporaryDirectory(dir=repo) as tmp:
                target = Path(tmp) / "x.npy"
                start = time.perf_counter()
                decode_rows(rows, target, settings, workers=workers, progress=False)
                out[workers] = len(rows) / (time.perf_counter() - start)
    finally:
        os.chdir(cwd)
    return out


def scan_throughput(repo: Path, limit: int) -> float:
    """Images/s of the split's scan (content hash, header, perceptual hash: scan.check_file)
    on the first `limit` photos, on every core."""
    sys.path.insert(0, str(repo / "src"))
    from image_classifier.data.parallel import default_workers, ordered_map
    from image_classifier.data.scan import check_file, list_candidates
    from image_classifier.preprocessing import MAX_PIXELS

    _, candidates, _ = list_candidates(repo / "data/raw")
    jobs = [path for path, _ in candidates[:limit]]
    check = functools.partial(check_file, max_pixels=MAX_PIXELS, perceptual=True)
    start = time.perf_counter()
    for _ in ordered_map(check, jobs, workers=default_workers(), chunksize=64, progress=False):
        pass
    return len(jobs) / (time.perf_counter() - start)


def forward_throughput(repo: Path, size: int, limit: int) -> float:
    """Images/s of LiteRT running the trained model's frozen base as phase 1 runs it (the
    served graph train converted, cut at the features; every core), on the first `limit`
    stored training images in batches of 32, after one warm-up batch."""
    sys.path.insert(0, str(repo / "src"))
    from image_classifier.data.store import open_split
    from image_classifier.litert.runner import Runner
    from image_classifier.training import served_graph

    graph = (repo / "saved_models/served_graph.tflite").read_bytes()
    run = Runner(served_graph.features_only(graph), os.cpu_count() or 1)
    cwd = Path.cwd()
    os.chdir(repo)
    try:
        with open_split("train", size, "rgb") as train:
            x = train.read(list(range(min(limit, len(train))))).astype("float32")
    finally:
        os.chdir(cwd)
    run(x[:32])
    start = time.perf_counter()
    for i in range(0, len(x), 32):
        run(x[i : i + 32])
    return len(x) / (time.perf_counter() - start)


def floor(r: dict) -> dict:
    """The seconds this machine needs at least for the run's work, from the rates measured in
    the same run: every photo scanned, every photo decoded, and the base's forward passes for
    every training image each epoch, and the validation and test images once."""
    totals = r["split_totals"]
    photos = sum(totals.values())
    passes = totals["train"] * r["epochs"] + totals["val"] + totals["test"]
    decode = max(r["decode_images_per_s"].values())
    parts = {
        "scan_s": photos / r["scan_images_per_s"],
        "decode_s": photos / decode,
        "forward_s": passes / r["forward_images_per_s"],
    }
    return {
        **{k: round(v, 1) for k, v in parts.items()},
        "total_s": round(sum(parts.values()), 1),
        "forward_passes": passes,
        "photos": photos,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ic-bench")
    parser.add_argument("--no-peer", action="store_true", help="skip the peers")
    parser.add_argument(
        "--peers",
        default="tutorial,cached",
        help="comma-separated: tutorial (no cache), cached (with .cache())",
    )
    parser.add_argument("--op-determinism", action="store_true", help="train.op_determinism")
    parser.add_argument("--quantization", default="none", help="export.quantization")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("SMALL.json", "LARGE.json"),
        help="print two runs' --json figures side by side, with the ratios, and exit",
    )
    parser.add_argument("--decode-sample", type=int, default=2000, help="also the scan's")
    parser.add_argument("--forward-sample", type=int, default=512)
    parser.add_argument(
        "--shards", type=int, metavar="N", help="data/raw as zip shards of N photos each"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.compare:
        compare(*(json.loads(path.read_text()) for path in args.compare))
        return
    peers = [] if args.no_peer else [p for p in args.peers.split(",") if p]
    if unknown := set(peers) - set(PEERS):
        parser.error(f"--peers: unknown {sorted(unknown)}; choose from {sorted(PEERS)}")

    sys.path.insert(0, str(ROOT / "src"))
    photos = make_dataset(args.images, args.data_dir)
    with tempfile.TemporaryDirectory(prefix="ic-scale-") as tmp:
        work = Path(tmp)
        weights = work / "mobilenet_v2_base.weights.h5"
        make_weights(weights, args.size)
        repo, tracking = make_workspace(work, photos, weights, args)
        print(f"dvc repro on {args.images} images ({repo}) ...", flush=True)
        wall, stages = run_measured(["dvc", "repro"], repo, stage_label, work / "repro.log")
        largest_process = round(stages.pop("largest_process_mb"))
        repro_log = (work / "repro.log").read_text(errors="replace")
        phases, own_peaks = stage_phases(repro_log), stage_peaks(repro_log)
        metrics = json.loads((repo / "reports/metrics.json").read_text())
        for name, cmd in (("dvc_status_s", ["status"]), ("noop_repro_s", ["repro"])):
            start = time.perf_counter()
            subprocess.run(["dvc", *cmd], cwd=repo, env=env(), check=True, capture_output=True)
            tracking[name] = round(time.perf_counter() - start, 2)
        tracking["disk_bytes"] = disk_usage(repo)
        results = {
            "images": args.images,
            "size": args.size,
            "epochs": args.epochs,
            "op_determinism": args.op_determinism,
            "shards": args.shards,
            "ours": {
                "repro_s": round(wall, 1),
                "stages": {
                    name: {
                        "wall_s": round(s["end"] - s["start"], 1),
                        "peak_rss_mb": round(s["peak_rss"] / 2**20),
                        "own_peak_mb": own_peaks.get(name),
                        "phases_s": {k: round(v, 1) for k, v in phases.get(name, {}).items()},
                    }
                    for name, s in sorted(stages.items(), key=lambda kv: kv[1]["start"])
                },
                "largest_process_mb": largest_process,
                "test_accuracy": metrics["accuracy"],
                "export": json.loads((repo / "reports/export.json").read_text()),
                "dvc": tracking,
            },
        }
        results["peers"] = {}
        for name in peers:
            print(f"peer '{name}' on the same images ...", flush=True)
            peer_cmd = [
                sys.executable,
                str(ROOT / "bench" / "keras_guide_peer.py"),
                str(photos),
                str(weights),
                "--epochs",
                str(args.epochs),
                "--size",
                str(args.size),
                *PEERS[name],
            ]
            log = work / f"peer-{name}.log"
            peer_wall, peer = run_measured(peer_cmd, work, peer_label, log)
            last = log.read_text().strip().splitlines()[-1]
            results["peers"][name] = {
                "wall_s": round(peer_wall, 1),
                "peak_rss_mb": round(peer["peer"]["peak_rss"] / 2**20),
                "largest_process_mb": round(peer["largest_process_mb"]),
                **json.loads(last),
            }
        print("decode throughput ...", flush=True)
        rates = decode_throughput(repo, args.size, args.decode_sample)
        results["decode_images_per_s"] = {str(k): round(v) for k, v in rates.items()}
        if (repo / "saved_models/served_graph.tflite").stat().st_size:
            print("scan and forward throughput (the floor) ...", flush=True)
            results["scan_images_per_s"] = round(scan_throughput(repo, args.decode_sample))
            rate = forward_throughput(repo, args.size, args.forward_sample)
            results["forward_images_per_s"] = round(rate, 1)
            split = json.loads((repo / "reports/split.json").read_text())
            results["split_totals"] = split["totals"]
            results["floor"] = floor(results)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def stage_peak(stage: dict) -> float:
    """The larger of a stage's sampled tree peak and its own process's exact peak: both fall
    short of the tree's true peak, each in its own way (module docstring, point 3)."""
    return max(stage["peak_rss_mb"], stage.get("own_peak_mb") or 0)


def report(r: dict) -> None:
    ours = r["ours"]
    print()
    print_header("TensorFlow", "Keras", "LiteRT", "DVC")
    print(
        f"{r['images']} images, {r['size']} px RGB, {r['epochs']} epoch(s), "
        f"train.op_determinism {str(r['op_determinism']).lower()}"
    )
    print(f"{'':<34}{'wall s':>9}{'peak RSS MB':>13}{'sampled':>9}{'own':>7}")
    for name, s in ours["stages"].items():
        own = f"{s['own_peak_mb']:>7.0f}" if s.get("own_peak_mb") else ""
        print(
            f"  ours: {name:<26}{s['wall_s']:>9.1f}{stage_peak(s):>13.0f}{s['peak_rss_mb']:>9}{own}"
        )
        for phase, seconds in s.get("phases_s", {}).items():
            print(f"          {phase:<24}{seconds:>9.1f}")
        if s.get("phases_s"):
            rest = s["wall_s"] - sum(s["phases_s"].values())
            print(f"          {'start-up, imports, rest':<24}{rest:>9.1f}")
    largest = max(stage_peak(s) for s in ours["stages"].values())
    print(f"  ours: dvc repro{'':<17}{ours['repro_s']:>9.1f}{largest:>13.0f}  (largest stage)")
    between = ours["repro_s"] - sum(s["wall_s"] for s in ours["stages"].values())
    print(f"        DVC outside the stages (hashing, caching, locks) {between:.1f} s")
    labels = {
        "tutorial": "TF tutorial, no cache (train)",
        "cached": "same + .cache() (train)",
    }
    for name, p in r["peers"].items():
        print(f"  {labels[name]:<32}{p['wall_s']:>9.1f}{p['peak_rss_mb']:>13}")
    for name, p in r["peers"].items():
        print(
            f"  vs {name}: repro / peer time {ours['repro_s'] / p['wall_s']:.2f}, "
            f"repro / peer fit alone {ours['repro_s'] / p['fit_s']:.2f}, "
            f"largest stage / peer memory {largest / p['peak_rss_mb']:.2f}, "
            f"peer fit alone {p['fit_s']:.1f} s, peer val accuracy {p['val_accuracy']:.3f}"
        )
    exact = [f"ours {ours['largest_process_mb']}"]
    exact += [f"{name} {p['largest_process_mb']}" for name, p in r["peers"].items()]
    print(f"  largest single process, kernel's peak RSS MB: {', '.join(exact)}")
    print(f"  accuracy: ours (test) {ours['test_accuracy']:.3f}")
    e = ours["export"]
    print(
        f"  export: {e['quantization']}, {e['size_kb']:.0f} KiB, "
        f"test accuracy {e['accuracy']:.3f}, "
        f"top-1 agreement with Keras {e['keras_top1_agreement']:.4f}"
    )
    d = ours["dvc"]
    if r.get("shards"):
        print(f"  data/raw: zip shards of {r['shards']} photos, packed in {d['pack_s']:.1f} s")
    print(
        f"  dvc add data/raw {d['dvc_add_s']:.1f} s, sha256sum of the photos "
        f"{d['sha256sum_s']:.1f} s ({d['dvc_add_s'] / max(d['sha256sum_s'], 1e-9):.2f}x); "
        f"dvc status {d['dvc_status_s']:.1f} s, no-op dvc repro {d['noop_repro_s']:.1f} s"
    )
    disk = {k: v / 1e9 for k, v in d["disk_bytes"].items()}
    pixels = disk["data/raw"] + disk["data/prepared"]
    print(
        f"  disk GB: raw {disk['data/raw']:.2f}, store {disk['data/prepared']:.2f}, "
        f"cache {disk['.dvc/cache']:.2f}; all three, each inode once, {disk['total']:.2f} "
        f"= {disk['total'] / pixels:.2f}x (raw + store)"
    )
    rates = r["decode_images_per_s"]
    most = max(rates, key=int)
    print(
        f"  decode, images/s: 1 worker {rates['1']}, {most} workers {rates[most]} "
        f"({rates[most] / rates['1']:.2f}x)"
    )
    if "floor" in r:
        f = r["floor"]
        print(
            f"  floor: scan {f['photos']} photos at {r['scan_images_per_s']}/s {f['scan_s']} s"
            f" + decode them at {rates[most]}/s {f['decode_s']} s + {f['forward_passes']} "
            f"forward passes (train x epochs, val, test) at {r['forward_images_per_s']}/s "
            f"{f['forward_s']} s = {f['total_s']} s; dvc repro {ours['repro_s']} s = "
            f"{ours['repro_s'] / f['total_s']:.2f}x the floor"
        )


def compare(small: dict, large: dict) -> None:
    """Two runs side by side: each stage's time and peak memory, the whole repro, the peer,
    DVC's figures and the disk, with large / small ratios."""
    a, b = small["ours"], large["ours"]
    n, m = small["images"], large["images"]
    print_header("TensorFlow", "Keras", "LiteRT", "DVC")
    print(f"{n} and {m} images ({m / n:.1f}x), {small['size']} px RGB, {small['epochs']} epoch(s)")
    print(f"{'':<22}{'wall s':>9}{'':>9}{'ratio':>7}{'peak RSS MB':>13}{'':>7}{'ratio':>7}")

    def row(label: str, t0: float, t1: float, m0: float | None = None, m1: float | None = None):
        mem = f"{m0:>13.0f}{m1:>7.0f}{m1 / m0:>7.2f}" if m0 else ""
        print(f"  {label:<20}{t0:>9.1f}{t1:>9.1f}{t1 / t0:>7.2f}{mem}")

    for name, s0 in a["stages"].items():
        s1 = b["stages"][name]
        row(name, s0["wall_s"], s1["wall_s"], stage_peak(s0), stage_peak(s1))
    largest = [max(stage_peak(s) for s in r["stages"].values()) for r in (a, b)]
    row("dvc repro", a["repro_s"], b["repro_s"], *largest)
    if all(s.get("own_peak_mb") for r in (a, b) for s in r["stages"].values()):
        print("  each stage process's own peak (kernel's VmHWM, worker processes apart), MB:")
        for name, s0 in a["stages"].items():
            m0, m1 = s0["own_peak_mb"], b["stages"][name]["own_peak_mb"]
            print(f"  {name:<20}{m0:>9.0f}{m1:>9.0f}{m1 / m0:>7.2f}")
    for name in small["peers"]:
        p0, p1 = small["peers"][name], large["peers"][name]
        row(f"peer {name}", p0["wall_s"], p1["wall_s"], p0["peak_rss_mb"], p1["peak_rss_mb"])
        times = [r["repro_s"] / p["wall_s"] for r, p in ((a, p0), (b, p1))]
        memory = [largest[0] / p0["peak_rss_mb"], largest[1] / p1["peak_rss_mb"]]
        print(f"  repro / peer time: {times[0]:.2f} and {times[1]:.2f}; "
              f"largest stage / peer memory: {memory[0]:.2f} and {memory[1]:.2f}")  # fmt: skip
    dvc = {"dvc_add_s": "dvc add data/raw", "sha256sum_s": "sha256sum",
           "dvc_status_s": "dvc status", "noop_repro_s": "no-op dvc repro"}  # fmt: skip
    for key, label in dvc.items():
        row(label, a["dvc"][key], b["dvc"][key])
    for key in ("data/raw", "data/prepared", ".dvc/cache", "total"):
        d0, d1 = a["dvc"]["disk_bytes"][key] / 1e9, b["dvc"]["disk_bytes"][key] / 1e9
        print(f"  {'disk GB ' + key:<20}{d0:>9.2f}{d1:>9.2f}{d1 / d0:>7.2f}")


if __name__ == "__main__":
    main()
