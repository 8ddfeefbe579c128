"""A `dvc repro` killed mid-prepare on photo-sized data: what it leaves, what the next redoes.

    python bench/interrupted.py [--images 20000] [--size 224] [--after 10] [--data-dir DIR]

Sets up the workspace bench/scale.py uses (the package's code and pipeline with params.yaml
of its own, the README's "Your own images" steps, DVC's cache hard-linked) and runs `dvc
repro prepare` (split, then prepare) to completion, timed. Then, as a user who changes
image.size and thinks better of it half-way: image.size goes to --size minus 32, `dvc repro
prepare` starts, and its whole process group gets SIGKILL --after seconds into prepare's
decoding (the kernel's kill: no clean-up code runs). Checks that dvc.lock is unchanged and
that the store's files, if still in data/prepared, are the previous ones byte for byte
(SHA-256), and measures what the killed run left in data/. Then puts image.size back and
times `dvc repro prepare` again: DVC's run-cache checks the previous store out of the cache
instead of decoding it again. Prints the figures, headed by the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header
from scale import env, make_dataset, make_weights, make_workspace


def digests(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.glob("*")):
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
        out[path.name] = h.hexdigest()
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def timed(cmd: list[str], repo: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=repo, env=env(), check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout + out.stderr


def kill_during_prepare(repo: Path, after: float) -> float:
    """Start `dvc repro prepare`; SIGKILL its process group `after` s once prepare's hidden
    work folder appears. Returns how long prepare had been decoding."""
    with (repo / "killed.log").open("w") as log:
        proc = subprocess.Popen(["dvc", "repro", "prepare"], cwd=repo, env=env(), stdout=log,
                                stderr=log, start_new_session=True)  # fmt: skip
    while proc.poll() is None and not any((repo / "data").glob(".prepared-*")):
        time.sleep(0.01)
    started = time.perf_counter()
    while proc.poll() is None and time.perf_counter() - started < after:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise SystemExit("dvc repro prepare ended before the kill: raise --images or lower --after")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--after", type=float, default=10.0, help="seconds into the decoding")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ic-bench")
    args = parser.parse_args()
    # make_workspace's training settings; only split and prepare run here.
    args.epochs, args.quantization, args.op_determinism, args.shards = 1, "none", False, None

    photos = make_dataset(args.images, args.data_dir)
    with tempfile.TemporaryDirectory(prefix="ic-interrupted-") as tmp:
        work = Path(tmp)
        weights = work / "mobilenet_v2_base.weights.h5"
        make_weights(weights, args.size)
        repo, _ = make_workspace(work, photos, weights, args)
        first, _ = timed(["dvc", "repro", "prepare"], repo)
        lock = (repo / "dvc.lock").read_text()
        before = digests(repo / "data/prepared")
        params_file = repo / "params.yaml"
        params = params_file.read_text()
        changed = yaml.safe_load(params)
        changed["image"]["size"] = args.size - 32
        params_file.write_text(yaml.safe_dump(changed, sort_keys=False))
        decoding = kill_during_prepare(repo, args.after)
        lock_kept = (repo / "dvc.lock").read_text() == lock
        store = repo / "data/prepared"
        store_state = "absent (DVC removed it before running the stage)"
        if store.exists():
            same = digests(store) == before
            store_state = "the previous store, byte for byte" if same else "CHANGED"
        left = sum(folder_bytes(p) for p in (repo / "data").glob(".prepared-*"))
        params_file.write_text(params)
        again, out = timed(["dvc", "repro", "prepare"], repo)
        restored = "Stage 'prepare' is cached" in out and "Running stage 'prepare'" not in out
        after_ok = digests(store) == before and (repo / "dvc.lock").read_text() == lock
        _, status = timed(["dvc", "status", "prepare"], repo)

    print_header("DVC")
    print(f"{args.images} images, {args.size} px RGB")
    print(f"  dvc repro prepare (split, prepare), complete: {first:.1f} s")
    print(f"  killed (SIGKILL) {decoding:.1f} s into prepare's decoding at {args.size - 32} px")
    print(f"    dvc.lock unchanged: {lock_kept}; data/prepared: {store_state}")
    print(f"    left by the killed run: data/.prepared-* {left / 2**30:.2f} GB")
    print(f"  dvc repro prepare, back at {args.size} px: {again:.1f} s; from the run-cache, no "
          f"decoding: {restored}; store and dvc.lock as before: {after_ok}")  # fmt: skip
    print(f"  dvc status prepare: {' '.join(status.split())}")


if __name__ == "__main__":
    main()
