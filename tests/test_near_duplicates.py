import io
import itertools

import numpy as np
import pytest
from PIL import Image
from scipy.fft import idctn

from image_classifier import synthetic
from image_classifier.data import near_duplicates as nd
from image_classifier.params import SplitParams

DEFAULT_BITS = SplitParams().near_duplicate_bits


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def fingerprint_of(data: bytes) -> nd.Fingerprint | None:
    return nd.image_fingerprint(data, Image.open(io.BytesIO(data)).size, 10**8)


def hash_of(data: bytes) -> int | None:
    found = fingerprint_of(data)
    return None if found is None else found.phash


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    spec = synthetic.Spec((12,), seed=3)
    return [synthetic.render(0, i, spec) for i in range(12)]


def test_copies_are_within_the_default_distance_and_confirmed_other_images_are_not(photos):
    originals = [fingerprint_of(encode(img, quality=90)) for img in photos]
    for img, original in zip(photos, originals, strict=True):
        w, ht = img.size
        copies = [
            fingerprint_of(encode(img, quality=60)),  # re-encoded
            fingerprint_of(encode(img.resize((w // 2, ht // 2)), "PNG")),  # resized
            fingerprint_of(encode(img.crop((4, 4, w - 4, ht - 4)), quality=85)),  # cropped
            fingerprint_of(encode(img.convert("RGBA"), "WEBP", quality=80)),  # converted
        ]
        assert max(distance(original.phash, c.phash) for c in copies) <= DEFAULT_BITS
        confirmed = set(nd.near_duplicate_pairs([original, *copies], DEFAULT_BITS))
        assert confirmed == set(itertools.combinations(range(5), 2))
    # Different images of one class (same shape and hue, random scenes) are farther apart, and
    # their detail bands do not correlate.
    pairs = list(itertools.combinations(originals, 2))
    assert min(distance(a.phash, b.phash) for a, b in pairs) > DEFAULT_BITS
    assert max(nd.detail_correlation(a.detail, b.detail) for a, b in pairs) < (
        nd.MIN_DETAIL_CORRELATION
    )


def test_a_candidate_pair_with_other_detail_is_not_confirmed():
    """Same coarse layout (pHash equal), different finer detail: what chained distinct photos
    into giant groups when the hash alone decided."""
    rng = np.random.default_rng(0)
    coarse = np.zeros((nd.THUMBNAIL, nd.THUMBNAIL))
    coarse[: nd.LOW, : nd.LOW] = rng.normal(0, 200, (nd.LOW, nd.LOW))

    def image(detail_seed: int) -> np.ndarray:
        coefficients = coarse.copy()
        band = np.random.default_rng(detail_seed).normal(0, 40, (nd.DETAIL, nd.DETAIL))
        band[: nd.LOW, : nd.LOW] = 0
        coefficients[: nd.DETAIL, : nd.DETAIL] += band
        return idctn(coefficients, norm="ortho") + 128

    one, same, other = nd.fingerprint(image(1)), nd.fingerprint(image(1)), nd.fingerprint(image(2))
    assert one.phash == other.phash
    assert len(nd.close_pairs([one.phash, same.phash, other.phash], 0)) > 0
    assert list(nd.near_duplicate_pairs([one, same, other], 0)) == [(0, 1)]


def test_confirmed_yields_each_pair_once_and_skips_missing_details():
    detail = bytes(range(1, 100))
    pairs = [(0, 1), (0, 1), (1, 2), (0, 2)]
    assert list(nd.confirmed(pairs, [detail, detail, None])) == [(0, 1)]


def test_small_or_flat_images_get_no_hash():
    digit = encode(Image.new("L", (8, 8), 255), "PNG")
    assert nd.image_fingerprint(digit, (8, 8), 10**8) is None
    assert fingerprint_of(encode(Image.new("RGB", (300, 200), (120, 30, 30)), "PNG")) is None


@pytest.mark.parametrize("compare_elements", [nd.COMPARE_ELEMENTS, 7])
def test_close_pairs_matches_brute_force(monkeypatch, compare_elements):
    """Also when a bucket's comparisons are cut into chunks of a few rows (7 elements: a row
    or two at a time here), as photos' buckets of thousands of look-alikes are."""
    monkeypatch.setattr(nd, "COMPARE_ELEMENTS", compare_elements)
    rng = np.random.default_rng(0)
    base = [int(x) for x in rng.integers(0, 2**63, 40)]
    hashes: list[int | None] = [*base]
    for k in range(20):  # near copies: a few random bits flipped
        flips = rng.choice(64, rng.integers(0, 7), replace=False)
        hashes.append(base[k] ^ sum(1 << int(b) for b in flips))
    hashes.append(None)
    for bits in (0, 3, 6, 8, 16):
        expected = {
            (i, j)
            for i, j in itertools.combinations(range(len(hashes)), 2)
            if hashes[i] is not None
            and hashes[j] is not None
            and distance(hashes[i], hashes[j]) <= bits
        }
        assert set(map(tuple, nd.close_pairs(hashes, bits).tolist())) == expected


@pytest.mark.parametrize("batch", [nd.CONFIRM_BATCH, 5])
def test_confirmed_correlates_as_detail_correlation_bit_for_bit(monkeypatch, batch):
    """confirmed() computes the pairs' correlations in batches, over the images of some pair
    only; each must be detail_correlation's exactly, or a pair on the threshold would flip."""
    monkeypatch.setattr(nd, "CONFIRM_BATCH", batch)
    rng = np.random.default_rng(1)
    details = [rng.integers(-127, 128, 192, dtype=np.int8).tobytes() for _ in range(40)]
    # images 30 to 39 are in no pair
    pairs = list(itertools.combinations(range(30), 2))
    for i, j in pairs[::7]:
        exact = nd.detail_correlation(details[i], details[j])
        kept = nd.confirmed(pairs, details, min_correlation=exact)
        assert (i, j) in kept
        assert all(nd.detail_correlation(details[a], details[b]) >= exact for a, b in kept)
        assert len(kept) == sum(
            nd.detail_correlation(details[a], details[b]) >= exact for a, b in pairs
        )
