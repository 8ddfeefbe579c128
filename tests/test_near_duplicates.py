import io
import itertools

import numpy as np
import pytest
from PIL import Image

from image_classifier import synthetic
from image_classifier.data import near_duplicates as nd
from image_classifier.params import SplitParams

DEFAULT_BITS = SplitParams().near_duplicate_bits


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def hash_of(data: bytes) -> int | None:
    return nd.image_phash(data, Image.open(io.BytesIO(data)).size, 10**8)


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    spec = synthetic.Spec((12,), seed=3)
    return [synthetic.render(0, i, spec) for i in range(12)]


def test_copies_are_within_the_default_distance_and_other_images_are_not(photos):
    originals = [hash_of(encode(img, quality=90)) for img in photos]
    for img, h in zip(photos, originals, strict=True):
        w, ht = img.size
        copies = [
            encode(img, quality=60),  # re-encoded
            encode(img.resize((w // 2, ht // 2)), "PNG"),  # resized
            encode(img.crop((4, 4, w - 4, ht - 4)), quality=85),  # cropped
            encode(img.convert("RGBA"), "WEBP", quality=80),  # converted
        ]
        assert max(distance(h, hash_of(c)) for c in copies) <= DEFAULT_BITS
    # Different images of one class (same shape and hue, random scenes) are farther apart.
    assert min(distance(a, b) for a, b in itertools.combinations(originals, 2)) > DEFAULT_BITS


def test_small_or_flat_images_get_no_hash():
    digit = encode(Image.new("L", (8, 8), 255), "PNG")
    assert nd.image_phash(digit, (8, 8), 10**8) is None
    assert hash_of(encode(Image.new("RGB", (300, 200), (120, 30, 30)), "PNG")) is None


def test_close_pairs_matches_brute_force():
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
        assert set(nd.close_pairs(hashes, bits)) == expected
