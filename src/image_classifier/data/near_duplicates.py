"""Near-duplicate images: a 64-bit perceptual hash (pHash) of the decoded pixels, and grouping
of the images whose hashes differ in a few bits.

Re-encodes, resizes, crops and burst shots of one scene are different files with the same
content; if one lands in train and another in test, the test score measures memory, not
generalisation. pHash keeps the signs of the lowest spatial frequencies of a 32x32 grayscale
thumbnail (above or below their median), which JPEG re-encoding, resizing and small crops
barely move: a re-encode, a half-size copy or a small crop stays within a few bits, while two
different images of one class are far apart (bench/near_duplicates.py prints the distances;
tests/test_near_duplicates.py checks that split.near_duplicate_bits separates them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
from scipy.fft import dctn

from image_classifier.preprocessing import ImageSource, decode_pixels

# Thumbnail the hash is computed from; JPEG draft mode decodes at 1/4 or 1/8 scale for it.
THUMBNAIL = 32
# Smaller sources (icons, 8x8 digits) have too little detail for a hash to tell a copy from a
# look-alike: on the bundled digits, 4 bits of dHash chained 1,605 of 1,797 into one group.
MIN_SIDE = 32
# A nearly flat thumbnail has no low frequencies to speak of; its bits are noise.
MIN_CONTRAST = 2.0  # standard deviation of the thumbnail's gray levels


def phash(pixels: np.ndarray) -> int | None:
    """64-bit pHash of (32, 32[, 1]) grayscale pixels: bit i says whether the i-th of the 8x8
    lowest DCT frequencies is above their median. None for a nearly flat image."""
    gray = np.asarray(pixels, dtype=np.float64).reshape(THUMBNAIL, THUMBNAIL)
    if gray.std() < MIN_CONTRAST:
        return None
    low = dctn(gray, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) is left out of the median
    return int(np.packbits(bits).view(">u8")[0])


def image_phash(source: ImageSource, size: tuple[int, int], max_pixels: int) -> int | None:
    """pHash of an image file of `size` (width, height) through the shared decoder (EXIF
    rotation, modes, alpha); None when the image is too small or flat to match reliably."""
    if min(size) < MIN_SIDE:
        return None
    return phash(decode_pixels(source, THUMBNAIL, "grayscale", max_pixels))


def close_pairs(hashes: Sequence[int | None], max_bits: int) -> Iterator[tuple[int, int]]:
    """Index pairs (i < j) whose hashes differ in at most max_bits bits (None: no hash).

    Pigeonhole: split the 64 bits into max_bits + 1 bands; two hashes within max_bits agree
    exactly on at least one band, so only images sharing a band value are compared. Near
    linear for varied images; a pair may be yielded more than once."""
    known = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    if len(known) < 2:
        return
    values = np.array([hashes[i] for i in known], dtype=np.uint64)
    bands = max_bits + 1
    # Exactly `bands` non-empty bands covering the 64 bits (widths differ by at most one).
    edges = [64 * b // bands for b in range(bands + 1)]
    for lo, hi in itertools.pairwise(edges):
        key = (values >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            members = order[start : start + size]
            block = values[members]
            close = np.bitwise_count(block[:, None] ^ block[None, :]) <= max_bits
            ii, jj = np.nonzero(np.triu(close, 1))
            for i, j in zip(known[members[ii]], known[members[jj]], strict=True):
                yield int(min(i, j)), int(max(i, j))
