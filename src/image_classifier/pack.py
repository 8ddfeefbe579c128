"""Pack a folder of class sub-folders into zip shards for data.raw_dir (data/archives.py).

    python -m image_classifier.pack SOURCE DEST [--per-shard 1000] [--prefix part]

Writes DEST/<prefix>-00000.zip, ... with up to --per-shard images each, as `<class>/<file>`
members. Members are stored, not compressed (photos do not compress), in sorted order with
fixed timestamps, so the same photos always give byte-identical shards and DVC sees no
change. Never overwrites a shard: pack photos added later with another --prefix.

Refuses to pack into the output of dvc.yaml's `sample` stage: DVC would keep regenerating the
digits there and `dvc add` of the folder would fail. The message names the commands
(`dvc remove sample`, then `dvc add`), as the README's "Your own images" does.
"""

from __future__ import annotations

import argparse
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from image_classifier import atomic
from image_classifier.cli import USER_ERRORS, setup_logging
from image_classifier.data.archives import SUFFIX, split_member
from image_classifier.data.scan import list_candidates
from image_classifier.errors import DataError

log = logging.getLogger(__name__)

# The earliest time a zip entry can carry: any fixed value makes the bytes reproducible.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def find_dvc_yaml(start: Path) -> Path | None:
    """The dvc.yaml of the project holding `start` (a folder that may not exist yet)."""
    for folder in [start, *start.parents]:
        if (folder / "dvc.yaml").is_file():
            return folder / "dvc.yaml"
    return None


def sample_outputs(dvc_yaml: Path) -> list[Path]:
    """The folders the `sample` stage of dvc_yaml writes, resolved; empty without that stage."""
    try:
        pipeline = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []  # DVC itself will say what is wrong with it
    stages = pipeline.get("stages") if isinstance(pipeline, dict) else None
    sample = stages.get("sample") if isinstance(stages, dict) else None
    outs = sample.get("outs") if isinstance(sample, dict) else None
    if not isinstance(outs, list):
        return []
    names = [next(iter(o)) if isinstance(o, dict) else str(o) for o in outs]
    return [(dvc_yaml.parent / name).resolve() for name in names]


def sample_stage_problem(dest: Path) -> tuple[bool, str] | None:
    """(refuse, message) when the project still generates the sample; None otherwise.

    Packing into the sample's own folder is refused; packing elsewhere only warns, since the
    shards are fine and only dvc.yaml and params.yaml are left to change."""
    target = dest.resolve()
    dvc_yaml = find_dvc_yaml(target.parent)
    if dvc_yaml is None:
        return None
    outputs = sample_outputs(dvc_yaml)
    if not outputs:
        return None
    if any(out == target or out in target.parents for out in outputs):
        return True, (
            f"{dest} is written by the `sample` stage of {dvc_yaml}: DVC would put the digits "
            f"back beside your shards, and `dvc add {dest}` fails while that stage exists. "
            f"First run `dvc remove sample` (it leaves {dest} on disk) and `rm -rf {dest}` "
            f"(the digits), then this command again, then `dvc add {dest}`"
        )
    return False, (
        f"{dvc_yaml} still has the `sample` stage, which writes the bundled digits: run "
        f"`dvc remove sample`, set data.raw_dir: {dest} in params.yaml, then `dvc add {dest}`"
    )


def plan_shards(files: Sequence[str], per_shard: int) -> list[list[str]]:
    """Sorted files cut into consecutive shards of at most per_shard."""
    if per_shard < 1:
        raise DataError(f"--per-shard must be at least 1, got {per_shard}")
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
    problem = sample_stage_problem(dest)
    if problem is not None and problem[0]:
        raise DataError(problem[1])
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
    folders = sorted(p.name for p in dest.glob("[!.]*") if p.is_dir()) if dest.is_dir() else []
    if folders:
        # Feedback exports and earlier photos may rightly sit there; the sample's digits do not.
        log.warning(
            "%s also holds class folders (%s): the split reads them beside the shards. If they "
            "are the sample's digits, remove them: rm -rf %s",
            dest,
            ", ".join(folders[:5]) + (", ..." if len(folders) > 5 else ""),
            " ".join(str(dest / f) for f in folders[:5]) + (" ..." if len(folders) > 5 else ""),
        )
    written: list[Path] = []
    try:
        for target, shard_files in zip(targets, plan, strict=True):
            write_shard(target, shard_files, source)
            written.append(target)
    except BaseException:
        # All or nothing: a partial set would be tracked by `dvc add` as the whole, and the
        # same command could not run again (its first shard would exist).
        for target in written:
            target.unlink(missing_ok=True)
        raise
    log.info("packed %d files into %d shards in %s", len(files), len(targets), dest)
    if problem is not None:
        log.warning("%s", problem[1])
    else:
        log.info("next: `dvc add %s`, then commit %s.dvc", dest, dest)
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
    except USER_ERRORS as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
