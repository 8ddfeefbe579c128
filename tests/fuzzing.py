"""Mutated images for fuzz tests: a valid file of every format Pillow can write here, then bit
flips, truncations, inserted and overwritten bytes (what a bad disk, a cut-off upload or a
hostile client sends)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

# Mode to try per format when RGB cannot be written (Pillow writes some formats in few modes).
MODES = ("RGB", "RGBA", "P", "L", "1")


def seed_files(size: tuple[int, int] = (24, 18)) -> dict[str, bytes]:
    """format -> a small valid file in it, for every format Pillow can write here (including
    write-only ones such as PDF and Palm, which uploads may well be)."""
    Image.init()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    out = {}
    for fmt in sorted(Image.SAVE):
        for mode in MODES:
            buf = io.BytesIO()
            try:
                rgb.convert(mode).save(buf, fmt)
            except Exception:  # a format this Pillow cannot round-trip
                continue
            out[fmt] = buf.getvalue()
            break
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random corruption; headers (the first 64 bytes) are hit more often than pixels."""
    buf = bytearray(data)
    kind = rng.integers(5)

    def position() -> int:
        head = min(len(buf), 64)
        return int(rng.integers(head) if rng.random() < 0.6 else rng.integers(len(buf)))

    if kind == 0:  # bit flips
        for _ in range(int(rng.integers(1, 9))):
            buf[position()] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncation
        del buf[int(rng.integers(len(buf))) :]
    elif kind == 2:  # inserted bytes
        at = position()
        buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == 3:  # overwritten run, often with extreme values (sizes, counts, offsets)
        at = position()
        run = int(rng.integers(1, 9))
        fill = rng.choice([0x00, 0xFF, 0x7F, 0x80])
        buf[at : at + run] = (
            bytes([int(fill)]) * run
            if rng.random() < 0.5
            else bytes(rng.integers(0, 256, run, dtype=np.uint8))
        )
    else:  # a chunk repeated (loops in chunked formats)
        a = position()
        b = min(len(buf), a + int(rng.integers(1, 128)))
        buf[b:b] = buf[a:b]
    return bytes(buf)


def mutated(seeds: dict[str, bytes], count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """`count` (format, bytes) pairs, spread evenly over the formats, reproducible by seed."""
    rng = np.random.default_rng(seed)
    formats = sorted(seeds)
    for i in range(count):
        fmt = formats[i % len(formats)]
        data = seeds[fmt]
        for _ in range(int(rng.integers(1, 3))):
            data = mutate(data, rng) or data[:1]
        yield fmt, data
