"""Near-duplicate images: a 64-bit perceptual hash (pHash) finds candidate pairs, and a second,
independent test on finer detail confirms each one before the images are grouped.

Re-encodes, resizes, crops and burst shots of one scene are different files with the same
content; if one lands in train and another in test, the test score measures memory, not
generalisation. pHash keeps the signs of the lowest spatial frequencies of a 32x32 grayscale
thumbnail (above or below their median), which JPEG re-encoding, resizing and small crops
barely move. But as a folder grows, distinct images whose coarse layout happens to match fall
within a few bits too, and pairs chain into groups of thousands of unrelated images. So a
candidate pair must also agree on the thumbnail's next band of frequencies, which pHash never
reads: the correlation of those DCT coefficients. Copies keep it near one; distinct images
whose coarse layout matches do not (bench/split_ratios.py prints both distributions, and
docs/benchmarks.md compares the second tests that were tried).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from scipy.fft import dctn

from image_classifier.preprocessing import ImageSource, decode_pixels

# Thumbnail both tests are computed from; JPEG draft mode decodes at 1/4 or 1/8 scale for it.
THUMBNAIL = 32
# Smaller sources (icons, 8x8 digits) have too little detail for a hash to tell a copy from a
# look-alike: on the bundled digits, 4 bits of dHash chained 1,605 of 1,797 into one group.
MIN_SIDE = 32
# A nearly flat thumbnail has no low frequencies to speak of; its bits are noise.
MIN_CONTRAST = 2.0  # standard deviation of the thumbnail's gray levels
# pHash reads the DCT's LOW x LOW corner; the detail test reads the rest of the DETAIL x DETAIL
# corner, so the two tests share no coefficient.
LOW = 8
DETAIL = 16
# Confirmation threshold on the detail correlation: copies below it and distinct pairs above it
# are both rare (bench/split_ratios.py; docs/benchmarks.md weighs one against the other).
MIN_DETAIL_CORRELATION = 0.92
DETAIL_BYTES = DETAIL * DETAIL - LOW * LOW
_DETAIL_BAND = np.ones((DETAIL, DETAIL), dtype=bool)
_DETAIL_BAND[:LOW, :LOW] = False


class Fingerprint(NamedTuple):
    phash: int
    detail: bytes  # the detail band's DCT coefficients, int8, scaled to their largest


def _dct(pixels: np.ndarray) -> np.ndarray | None:
    gray = np.asarray(pixels, dtype=np.float64).reshape(THUMBNAIL, THUMBNAIL)
    if gray.std() < MIN_CONTRAST:
        return None
    return dctn(gray, norm="ortho")


def _phash_bits(coefficients: np.ndarray) -> int:
    low = coefficients[:LOW, :LOW].ravel()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) is left out of the median
    return int(np.packbits(bits).view(">u8")[0])


def _detail_bytes(coefficients: np.ndarray) -> bytes:
    values = coefficients[:DETAIL, :DETAIL][_DETAIL_BAND]
    scale = np.abs(values).max() or 1.0
    return np.round(values / scale * 127).astype(np.int8).tobytes()


def phash(pixels: np.ndarray) -> int | None:
    """64-bit pHash of (32, 32[, 1]) grayscale pixels: bit i says whether the i-th of the 8x8
    lowest DCT frequencies is above their median. None for a nearly flat image."""
    coefficients = _dct(pixels)
    return None if coefficients is None else _phash_bits(coefficients)


def fingerprint(pixels: np.ndarray) -> Fingerprint | None:
    """pHash and detail band of (32, 32[, 1]) grayscale pixels; None for a nearly flat image."""
    coefficients = _dct(pixels)
    if coefficients is None:
        return None
    return Fingerprint(_phash_bits(coefficients), _detail_bytes(coefficients))


def image_fingerprint(
    source: ImageSource, size: tuple[int, int], max_pixels: int
) -> Fingerprint | None:
    """Fingerprint of an image file of `size` (width, height) through the shared decoder (EXIF
    rotation, modes, alpha); None when the image is too small or flat to match reliably."""
    if min(size) < MIN_SIDE:
        return None
    return fingerprint(decode_pixels(source, THUMBNAIL, "grayscale", max_pixels))


def detail_correlation(a: bytes, b: bytes) -> float:
    """Correlation of two detail bands: one for a perfect copy, about zero for unrelated images."""
    x = np.frombuffer(a, dtype=np.int8).astype(np.float64)
    y = np.frombuffer(b, dtype=np.int8).astype(np.float64)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / norm if norm else 0.0


# Hash comparisons held in memory at once (8 bytes each, and a byte for their distances).
COMPARE_ELEMENTS = 1 << 16


def close_pairs(hashes: Sequence[int | None], max_bits: int) -> np.ndarray:
    """Index pairs (i < j) whose hashes differ in at most max_bits bits (None: no hash), each
    once, in order: a (pairs, 2) array.

    Pigeonhole: split the 64 bits into max_bits + 1 bands; two hashes within max_bits agree
    exactly on at least one band, so only images sharing a band value are compared. Near
    linear for varied images; look-alikes share bands, and their comparisons grow with the
    square of their number, so they stay in numpy: only the close pairs reach Python."""
    known = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    if len(known) < 2:
        return np.empty((0, 2), dtype=np.int64)
    values = np.array([hashes[i] for i in known], dtype=np.uint64)
    bands = max_bits + 1
    # Exactly `bands` non-empty bands covering the 64 bits (widths differ by at most one).
    edges = [64 * b // bands for b in range(bands + 1)]
    found = [np.empty((0, 2), dtype=np.int64)]
    for lo, hi in itertools.pairwise(edges):
        key = (values >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            members = order[start : start + size]
            block = values[members]
            # Each row against the rows after it only, a few rows at a time: a bucket of
            # look-alikes holds thousands of images, and its whole square is hundreds of MB.
            step = max(1, COMPARE_ELEMENTS // size)
            for at in range(0, size - 1, step):
                rows = block[at : at + step, None] ^ block[None, at:]
                ii, jj = np.nonzero(np.bitwise_count(rows) <= max_bits)
                upper = ii < jj
                a, b = members[ii[upper] + at], members[jj[upper] + at]
                a, b = known[a], known[b]
                found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    return np.unique(np.concatenate(found), axis=0)


# Candidate pairs whose detail bands are correlated at a time (memory: two int8 rows each).
CONFIRM_BATCH = 8192


def confirmed(
    pairs: np.ndarray | Iterable[tuple[int, int]],
    details: Sequence[bytes | None],
    min_correlation: float = MIN_DETAIL_CORRELATION,
) -> list[tuple[int, int]]:
    """The candidate pairs whose detail bands correlate at least min_correlation, each once,
    in order. Each correlation is detail_correlation's, bit for bit: the sums are of whole
    numbers, exact in float64 in any order."""
    unique = np.unique(np.array(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
    width = next((len(d) for d in details if d is not None), 0)
    if not len(unique) or not width:
        return []
    # Only the images of some candidate pair: on photos, about a third of them.
    involved = np.unique(unique)
    have = np.array([details[i] is not None for i in involved.tolist()])
    rows = b"".join(details[i] or bytes(width) for i in involved.tolist())
    rows = np.frombuffer(rows, dtype=np.int8).reshape(len(involved), width)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    kept = []
    for at in range(0, len(unique), CONFIRM_BATCH):
        batch = unique[at : at + CONFIRM_BATCH]
        a, b = np.searchsorted(involved, batch.T)
        dots = np.einsum("ij,ij->i", rows[a], rows[b], dtype=np.float64)
        norm = norms[a] * norms[b]
        corr = np.divide(dots, norm, out=np.zeros_like(dots), where=norm > 0)
        kept.append(batch[have[a] & have[b] & (corr >= min_correlation)])
    return [(i, j) for i, j in np.concatenate(kept).tolist()]


def near_duplicate_pairs(
    fingerprints: Sequence[Fingerprint | None], max_bits: int
) -> list[tuple[int, int]]:
    """Index pairs (i < j) within max_bits of pHash, confirmed by their detail bands."""
    hashes = [None if f is None else f.phash for f in fingerprints]
    details = [None if f is None else f.detail for f in fingerprints]
    return confirmed(close_pairs(hashes, max_bits), details)
