"""The decoded-pixel store: written once by `prepare`, read in batches by train, evaluate, export.

Layout of data/prepared/:
    meta.json        classes, image size/mode, preprocessing version, images per split
    <split>.npy      uint8 (n, size, size, channels): a plain NumPy file, np.load(mmap_mode="r")
    <split>.csv      path,label,sha256 of the stored images, in store order

Why fixed-size uint8 records in .npy: any image is one seek away, so training shuffles indices
instead of data; uint8 is a quarter of float32 and equals decode_pixels' output exactly; and
NumPy reads the format with no extra dependency. Readers use os.preadv into a batch buffer,
not a memory map, so pages a stage has read stay in the OS page cache instead of counting
towards its resident memory: memory does not grow with the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from image_classifier import config
from image_classifier.data import npy
from image_classifier.data.manifests import Row, read_manifest
from image_classifier.preprocessing import PREPROCESSING_VERSION

# The .npy header is padded to a fixed size so the final image count can be written in place
# after decoding (unreadable files are dropped), without copying the pixel data.
HEADER_BYTES = 128


class StoreError(ValueError):
    """The pixel store is missing or was made with other settings; the message says what to do."""


def npy_header(shape: Sequence[int]) -> bytes:
    """The .npy header of a store of this shape, HEADER_BYTES long."""
    return npy.header(shape, np.uint8, HEADER_BYTES)


@dataclass(frozen=True)
class StoreMeta:
    classes: tuple[str, ...]
    size: int
    color_mode: str
    channels: int
    preprocessing_version: int
    counts: dict[str, int]

    @property
    def record_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)

    def to_dict(self) -> dict:
        return {
            "classes": list(self.classes),
            "image": {"size": self.size, "color_mode": self.color_mode, "channels": self.channels},
            "preprocessing_version": self.preprocessing_version,
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> StoreMeta:
        return cls(
            tuple(raw["classes"]),
            int(raw["image"]["size"]),
            str(raw["image"]["color_mode"]),
            int(raw["image"]["channels"]),
            int(raw["preprocessing_version"]),
            {str(k): int(v) for k, v in raw["counts"].items()},
        )


def read_meta(directory: Path = config.PREPARED_DIR) -> StoreMeta:
    path = directory / "meta.json"
    if not path.is_file():
        raise StoreError(f"{path} not found: run the prepare stage first (dvc repro)")
    try:
        return StoreMeta.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # ValueError covers a JSONDecodeError; the others, a mapping without prepare's keys.
        raise StoreError(
            f"{path} is damaged ({type(exc).__name__}: {exc}): re-run the prepare stage "
            "(dvc repro -f -s prepare)"
        ) from None


class SplitPixels:
    """One split of the store: labels and paths in memory, pixels read on demand."""

    def __init__(self, directory: Path, split: str, meta: StoreMeta) -> None:
        self.path = directory / f"{split}.npy"
        self.meta = meta
        self.rows: list[Row] = read_manifest(directory / f"{split}.csv")
        index = {name: i for i, name in enumerate(meta.classes)}
        unknown = sorted({r.label for r in self.rows} - set(index))
        if unknown:
            raise StoreError(f"{self.path}: labels {unknown} are not among {list(meta.classes)}")
        self.labels = np.array([index[r.label] for r in self.rows], dtype=np.int64)
        self.record_bytes = int(np.prod(meta.record_shape))
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise StoreError(
                f"{self.path} not found: re-run the prepare stage (dvc repro -f -s prepare)"
            ) from None
        expected = HEADER_BYTES + len(self.rows) * self.record_bytes
        if os.fstat(self._fd).st_size != expected or os.pread(self._fd, 6, 0) != npy.MAGIC[:6]:
            os.close(self._fd)
            raise StoreError(
                f"{self.path} does not hold {len(self.rows)} images of {meta.record_shape}: "
                "re-run the prepare stage (dvc repro -f -s prepare)"
            )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.rows]

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 (len(indices), size, size, channels), in the order given."""
        out = np.empty((len(indices), *self.meta.record_shape), dtype=np.uint8)
        flat = out.reshape(len(indices), -1)
        for slot, i in enumerate(np.asarray(indices, dtype=np.int64)):
            if not 0 <= i < len(self.rows):
                raise IndexError(f"image {i} is not in {self.path} ({len(self.rows)} images)")
            got = os.preadv(self._fd, [flat[slot]], HEADER_BYTES + int(i) * self.record_bytes)
            if got != self.record_bytes:
                raise StoreError(f"{self.path}: short read at image {i}; the file is damaged")
        return out

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(uint8 pixels, int labels) in store order: for evaluation and export."""
        for start in range(0, len(self.rows), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self.rows)))
            yield self.read(idx), self.labels[idx]

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> SplitPixels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_split(
    split: str,
    size: int,
    color_mode: str,
    directory: Path = config.PREPARED_DIR,
) -> SplitPixels:
    """Open one split, refusing a store made for another image size or colour mode."""
    meta = read_meta(directory)
    made = (meta.size, meta.color_mode, meta.preprocessing_version)
    wanted = (size, color_mode, PREPROCESSING_VERSION)
    if made != wanted:
        raise StoreError(
            f"{directory} holds images decoded as (size, color_mode, preprocessing) {made}, "
            f"but params.yaml and this code ask for {wanted}: run `dvc repro`"
        )
    return SplitPixels(directory, split, meta)


def fingerprint(splits: Sequence[SplitPixels]) -> str:
    """SHA-256 of the splits' rows (path, label, content hash) in store order: which images, in
    which order. Files computed from the store record it, so a reader can tell they match."""
    digest = hashlib.sha256()
    for split in splits:
        for row in split.rows:
            digest.update(f"{row.path}\0{row.label}\0{row.sha256}\n".encode())
    return digest.hexdigest()


def inference_batch_size(size: int, channels: int) -> int:
    """Images per inference batch: 256 for thumbnails, fewer as images grow (32 at 224 px RGB),
    so activation memory stays about the same whatever image.size is."""
    budget = 32 * 224 * 224 * 3
    per_image = size * size * channels
    return int(max(1, min(256, 2 ** int(np.log2(max(1, budget // per_image))))))


def seeded_sample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of `limit` of a split's n images, seeded (all of them when limit is None
    or >= n): int8 calibration, export's Keras check, the linear baseline's training set."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
