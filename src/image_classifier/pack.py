"""Pack a folder of class sub-folders into zip shards for data.raw_dir (data/archives.py).

    python -m image_classifier.pack SOURCE DEST [--per-shard 1000] [--prefix part]

Writes DEST/<prefix>-00000.zip, ... with up to --per-shard images each, as `<class>/<file>`
members. Members are stored, not compressed (photos do not compress), in sorted order with
fixed timestamps, so the same photos always give byte-identical shards and DVC sees no
change. Never overwrites a shard: pack photos added later with another --prefix.
"""

from __future__ import annotations

import argparse
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

from image_classifier import atomic
from image_classifier.cli import USER_ERRORS, setup_logging
from image_classifier.data.archives import SUFFIX, split_member
from image_classifier.data.scan import list_candidates
from image_classifier.errors import DataError

log = logging.getLogger(__name__)

# The earliest time a zip entry can carry: any fixed value makes the bytes reproducible.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def plan_shards(files: Sequence[str], per_shard: int) -> list[list[str]]:
    """Sorted files cut into consecutive shards of at most per_shard."""
    if per_shard < 1:
        raise ValueError(f"--per-shard must be at least 1, got {per_shard}")
    ordered = sorted(files)
    return [ordered[i : i + per_shard] for i in range(0, len(ordered), per_shard)]


def write_shard(target: Path, files: Sequence[str], root: Path) -> None:
    """One shard at target, atomically; each file's member name is its path under root."""
    with atomic.atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for path in files:
            info = zipfile.ZipInfo(Path(path).relative_to(root).as_posix(), FIXED_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, Path(path).read_bytes(), zipfile.ZIP_STORED)


def pack(source: Path, dest: Path, per_shard: int = 1000, prefix: str = "part") -> list[Path]:
    """Shards of every image file under source's class folders; returns their paths."""
    if dest.resolve() == source.resolve() or source.resolve() in dest.resolve().parents:
        # The scan would then find every image twice: in its folder and in a shard.
        raise DataError(f"{dest} is inside {source}: pack into another folder")
    _, candidates, strays = list_candidates(source)
    files = [path for path, _ in candidates if split_member(path) is None]
    if not files:
        raise DataError(f"{source} has no files in class sub-folders to pack")
    for path in strays:
        log.warning("not packed, not inside a class folder: %s", path)
    plan = plan_shards(files, per_shard)
    targets = [dest / f"{prefix}-{i:05d}{SUFFIX}" for i in range(len(plan))]
    existing = [t for t in targets if t.exists()]
    if existing:
        raise DataError(
            f"{existing[0]} already exists: choose another --prefix for new photos, or remove "
            "the old shards first"
        )
    for target, shard_files in zip(targets, plan, strict=True):
        write_shard(target, shard_files, source)
    log.info("packed %d files into %d shards in %s", len(files), len(targets), dest)
    return targets


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of <class>/<file> images")
    parser.add_argument("dest", type=Path, help="folder for the shards (data.raw_dir)")
    parser.add_argument("--per-shard", type=int, default=1000, help="images per shard")
    parser.add_argument("--prefix", default="part", help="shard names: <prefix>-00000.zip")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        pack(args.source, args.dest, args.per_shard, args.prefix)
    except (*USER_ERRORS, ValueError) as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
