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

import re
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path, PurePosixPath

from image_classifier.errors import DataError, MissingFileError

SUFFIX = ".zip"
MEMBER_SEP = "!/"
_MEMBER = re.compile(re.escape(SUFFIX + MEMBER_SEP), re.IGNORECASE)  # Photos.ZIP is a shard too
# Folders that archivers add and that hold no photos (macOS Finder's resource forks).
IGNORED_FOLDERS = frozenset({"__MACOSX"})
# Open shards per process: prepare's workers read rows sorted by path, so one shard at a time
# is the common case; the bound keeps a worker from holding every shard's member list.
OPEN_SHARDS = 4

# What zipfile raises on a damaged archive besides BadZipFile (found by fuzzing: a flipped
# version byte, a cut member, an empty name, a stray encryption flag).
DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    ValueError,
    IndexError,
    NotImplementedError,
    RuntimeError,
)

_open: OrderedDict[tuple, zipfile.ZipFile] = OrderedDict()


def is_shard(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == SUFFIX and not path.name.startswith(".")


def member_path(shard: Path | str, name: str) -> str:
    return f"{PurePosixPath(shard)}{MEMBER_SEP}{name}"


def split_member(path: str) -> tuple[str, str] | None:
    """(shard, member name) for a path inside a shard; None for a plain file."""
    found = _MEMBER.search(path)
    if found is None:
        return None
    return path[: found.start() + len(SUFFIX)], path[found.end() :]


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
    except DAMAGED as exc:
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
        raise MissingFileError(f"no member {name} in {shard}") from None
    except DAMAGED as exc:
        raise OSError(f"damaged member {name} of {shard}: {exc}") from None


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p in IGNORED_FOLDERS for p in parts)


def list_shard(shard: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, class) of every image member, sorted, and the members outside any class folder.

    Hidden members (.DS_Store, ._x.jpg, __MACOSX/) are ignored, as they are in folders."""
    try:
        with zipfile.ZipFile(shard) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (*DAMAGED, OSError) as exc:
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
