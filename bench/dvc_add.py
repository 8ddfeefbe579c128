"""Tracking many photos with DVC: `dvc add data/raw` against hashing the same files alone.

    python bench/dvc_add.py [--images 20000] [--per-shard 1000] [--data-dir DIR]

On the photos bench/scale.py generates (--images of them, reused from --data-dir), each in a
fresh project as the README's "Your own images" leaves it (the package's pipeline without
`sample`, params.yaml of its own, cache hard-linked, committed) with the photos hard-linked
into data/raw, times:
1. `sha256sum` of every file, one process (coreutils): the peer. Every file is read once
   before anything is timed, so that every row reads from the page cache;
2. `dvc add data/raw` with the project's settings (DVC hashes on max(1, min(4, cores // 2))
   threads: one on a 2-core machine);
3. the same with `core.checksum_jobs` set to every core;
4. the photos as zip shards the split stage reads: `python -m image_classifier.pack` into
   data/raw (--per-shard photos each), then `dvc add data/raw`; packing and tracking apart.
After 2 and 4, `dvc status` of the pipeline (none of its stages run yet) is timed too.
Prints each one's wall time and its ratio to sha256sum, headed by the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from machine import print_header
from scale import ROOT, SHA256SUM, env, make_dataset

import fork


def workspace(work: Path, photos: Path | None, name: str) -> Path:
    """The project as a user has it after the README's "Your own images" first steps (the
    package's pipeline without `sample`, params.yaml at the code's defaults, an empty relabel
    file, committed), with the photos hard-linked into data/raw (photos None: data/raw left
    to the caller). The repository's params.yaml, data/ and .dvc/config are its fork's, so
    none is copied; no src either: only `dvc add` and `dvc status` run here."""
    repo = work / name
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_text(fork.DVC_CONFIG)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(fork.pipeline_stages(), sort_keys=False))
    fork.write_params(repo / "params.yaml")
    relabel = repo / fork.params_dict()["data"]["relabel"]
    relabel.parent.mkdir(parents=True, exist_ok=True)
    relabel.write_text("path,label\n")
    for path in (".dvcignore", ".gitignore"):
        shutil.copy2(ROOT / path, repo / path)
    if photos is not None:
        shutil.copytree(photos, repo / "data" / "raw", copy_function=os.link)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "bench@example.com"],
        ["git", "config", "user.name", "bench"],
        ["git", "config", "gc.auto", "0"],
        ["git", "add", "dvc.yaml", "params.yaml", ".dvc", ".dvcignore", ".gitignore"],
        ["git", "commit", "-qm", "project"],
    ):
        subprocess.run(cmd, cwd=repo, env=env(), check=True, capture_output=True)
    return repo


def timed(commands: list[list[str]], repo: Path) -> float:
    start = time.perf_counter()
    for cmd in commands:
        subprocess.run(cmd, cwd=repo, env=env(), check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--per-shard", type=int, default=1000, help="photos per zip shard")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ic-bench")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    photos = make_dataset(args.images, args.data_dir)
    cores = os.cpu_count() or 1
    print_header("DVC")
    with tempfile.TemporaryDirectory(prefix="ic-dvc-add-") as tmp:
        work = Path(tmp)
        rows = {}
        repo = workspace(work, photos, "sha256sum")
        timed([["sh", "-c", "find data/raw -type f -print0 | xargs -0 cat > /dev/null"]], repo)
        rows["sha256sum, one process"] = timed([["sh", "-c", SHA256SUM]], repo)
        repo = workspace(work, photos, "default")
        rows["dvc add data/raw (project settings)"] = timed([["dvc", "add", "data/raw"]], repo)
        rows["then dvc status, folders"] = timed([["dvc", "status"]], repo)
        repo = workspace(work, photos, "jobs")
        subprocess.run(
            ["dvc", "config", "core.checksum_jobs", str(cores)], cwd=repo, env=env(), check=True
        )
        rows[f"dvc add data/raw, core.checksum_jobs {cores}"] = timed(
            [["dvc", "add", "data/raw"]], repo
        )
        repo = workspace(work, None, "shards")
        pack = [sys.executable, "-m", "image_classifier.pack", str(photos), "data/raw"]
        rows[f"pack into zip shards of {args.per_shard}"] = timed(
            [[*pack, "--per-shard", str(args.per_shard)]], repo
        )
        rows["then dvc add data/raw (the shards)"] = timed([["dvc", "add", "data/raw"]], repo)
        rows["then dvc status, shards"] = timed([["dvc", "status"]], repo)
    peer = rows["sha256sum, one process"]
    print(f"{args.images} photos, {photos}")
    for label, seconds in rows.items():
        print(f"  {label:50s} {seconds:7.1f} s  {seconds / peer:5.2f}x sha256sum")


if __name__ == "__main__":
    main()
