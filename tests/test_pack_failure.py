"""`pack` failing part-way (a full disk, an unreadable photo): all or nothing. No shard of the
failed run is left, whole or half-written, no temp file either, the shards already in the
destination are untouched, and the same command then runs again."""

from __future__ import annotations

import errno
import zipfile
from pathlib import Path

import pytest

from image_classifier import pack

PER_SHARD = 10  # image_tree's 36 images: shards of 10, 10, 10 and 6


def fail_inside_a_shard(monkeypatch) -> None:
    """The 15th member written fails: the middle of the second shard."""
    written = 0
    original = zipfile.ZipFile.writestr

    def writestr(self, *args, **kwargs):
        nonlocal written
        written += 1
        if written == 15:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)


def fail_between_shards(monkeypatch) -> None:
    """The third shard fails before it is started."""
    calls = 0
    original = pack.write_shard

    def write_shard(target, files, root):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.EIO, "Input/output error")
        return original(target, files, root)

    monkeypatch.setattr(pack, "write_shard", write_shard)


def members(shard: Path) -> list[str]:
    with zipfile.ZipFile(shard) as zf:
        assert zf.testzip() is None, f"{shard} has a damaged member"
        return zf.namelist()


def planned(image_tree: Path) -> list[list[str]]:
    files = sorted(p for p in image_tree.rglob("*") if p.is_file())
    names = [p.relative_to(image_tree).as_posix() for p in files]
    return [sorted(names)[i : i + PER_SHARD] for i in range(0, len(names), PER_SHARD)]


@pytest.fixture
def earlier(image_tree, tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A destination that already holds a complete set of shards (prefix `old`)."""
    dest = tmp_path / "shards"
    pack.pack(image_tree, dest, per_shard=PER_SHARD, prefix="old")
    return dest, {p.name: p.read_bytes() for p in sorted(dest.iterdir())}


@pytest.mark.parametrize("fault", [fail_inside_a_shard, fail_between_shards])
def test_a_failed_pack_leaves_none_of_its_shards_and_can_be_run_again(
    image_tree, earlier, monkeypatch, fault
):
    dest, before = earlier
    with monkeypatch.context() as patched:
        fault(patched)
        with pytest.raises(OSError):
            pack.pack(image_tree, dest, per_shard=PER_SHARD, prefix="part")
    # Only the earlier set, byte for byte: no temp file, no shard of the failed run.
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    again = pack.pack(image_tree, dest, per_shard=PER_SHARD, prefix="part")
    assert [members(p) for p in again] == planned(image_tree)
