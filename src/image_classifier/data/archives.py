"""Images inside zip shards: `data.raw_dir` may hold `*.zip` files beside its class folders.

Each shard holds `<class>/<file>` members and counts as those class folders. DVC then tracks a
few hundred files instead of every photo, which is what makes `dvc add`, `status` and `push` of
100,000 photos cheap (docs/operations.md, "Many photos: zip shards"). Zip, not tar: its central
directory finds a member by name without reading the archive through, and prepare reads members
in manifest order. An image inside a shard is named `<shard>.zip!/<class>/<file>` in the
manifests and reports (the `!/` of Java's jar URLs). `python -m image_classifier.pack` writes
shards.
"""

from __future__ import annotations

import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path, PurePosixPath

from image_classifier.errors import DataError

SUFFIX = ".zip"
MEMBER_SEP = "!/"
# Folders that archivers add and that hold no photos (macOS Finder's resource forks).
IGNORED_FOLDERS = frozenset({"__MACOSX"})
# Open shards per process: prepare's workers read rows sorted by path, so one shard at a time
# is the common case; a bound keeps a 100,000-member listing from being held per shard.
OPEN_SHARDS = 4

_open: OrderedDict[tuple, zipfile.ZipFile] = OrderedDict()


def is_shard(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == SUFFIX and not path.name.startswith(".")


def member_path(shard: Path | str, name: str) -> str:
    return f"{PurePosixPath(shard)}{MEMBER_SEP}{name}"


def split_member(path: str) -> tuple[str, str] | None:
    """(shard, member name) for a path inside a shard; None for a plain file."""
    shard, sep, name = path.partition(SUFFIX + MEMBER_SEP)
    return (shard + SUFFIX, name) if sep else None


def _shard(path: str) -> zipfile.ZipFile:
    st = Path(path).stat()
    # A shard replaced at the same path (dvc checkout, a test) must not be read from a stale
    # listing, hence the inode, size and time in the key.
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _open:
        _open.move_to_end(key)
        return _open[key]
    try:
        shard = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path} is not a readable zip archive ({exc})") from None
    _open[key] = shard
    while len(_open) > OPEN_SHARDS:
        _open.popitem(last=False)[1].close()
    return shard


def read_bytes(path: str) -> bytes:
    """The bytes of a plain file or of a member of a shard (OSError when unreadable)."""
    parts = split_member(path)
    if parts is None:
        return Path(path).read_bytes()
    shard, name = parts
    try:
        return _shard(shard).read(name)
    except KeyError:
        raise FileNotFoundError(f"no member {name} in {shard}") from None
    except (zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise OSError(f"damaged member {name} of {shard}: {exc}") from None


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p in IGNORED_FOLDERS for p in parts)


def list_shard(shard: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, class) of every image member, sorted, and the members outside any class folder.

    Hidden members (.DS_Store, ._x.jpg, __MACOSX/) are ignored, as they are in folders."""
    try:
        with zipfile.ZipFile(shard) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"{shard} is not a readable zip archive ({exc}); re-create it with "
            "`python -m image_classifier.pack`, or move it out of data.raw_dir"
        ) from None
    found, strays = [], []
    for name in sorted(names):
        parts = PurePosixPath(name).parts
        escapes = any(p in ("..", "/") for p in parts)
        if _hidden(parts) and not escapes:
            continue
        if len(parts) < 2 or escapes:
            strays.append(member_path(shard, name))
        else:
            found.append((member_path(shard, name), parts[0]))
    return found, strays
