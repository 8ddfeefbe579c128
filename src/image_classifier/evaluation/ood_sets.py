"""Images no classifier of the user's classes should call known: evaluate measures the
out-of-distribution detector on them (AUROC, the share rejected).

Each set is drawn as a file a visitor could upload (an RGB image of 64 to 160 pixels a
side, encoded as PNG) and decoded by the shared preprocessing at the model's size, so the
detector sees what serving would. Seeded: the same (set, seed, count) gives the same images.

- noise: uniform or smoothed random pixels;
- blank: white, black or one grey level;
- flat: one random colour;
- gradients: a linear blend of two random colours at a random angle;
- textures: stripes, checks, dots or speckle (synthetic_sets' texture family);
- photos: the photo-like scenes of image_classifier.synthetic (far-OOD for a digits model);
- digits: scikit-learn's handwritten digits (far-OOD for a photo model).
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from image_classifier.preprocessing import decode_pixels, encode_png

Rng = np.random.Generator


def _side(rng: Rng) -> int:
    return int(rng.integers(64, 161))


def _noise(rng: Rng, index: int) -> Image.Image:
    side = _side(rng)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB")
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4))) if index % 2 else img


def _blank(rng: Rng, index: int) -> Image.Image:
    level = (255, 0, int(rng.integers(1, 255)))[index % 3]
    return Image.new("RGB", (_side(rng),) * 2, (level,) * 3)


def _colour(rng: Rng) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.random(), rng.random())
    return int(r * 255), int(g * 255), int(b * 255)


def _flat(rng: Rng, index: int) -> Image.Image:
    return Image.new("RGB", (_side(rng),) * 2, _colour(rng))


def _gradients(rng: Rng, index: int) -> Image.Image:
    side = _side(rng)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:side, 0:side] / max(side - 1, 1)
    t = np.clip((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) + 0.5, 0, 1)[..., None]
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    return Image.fromarray((a * (1 - t) + b * t).astype(np.uint8), "RGB")


def _textures(rng: Rng, index: int) -> Image.Image:
    from image_classifier import synthetic_sets

    return synthetic_sets._texture(rng, index % 4, _side(rng))


def _photos(rng: Rng, index: int) -> Image.Image:
    from image_classifier import synthetic

    spec = synthetic.Spec(counts=(1,) * 9, seed=int(rng.integers(1 << 30)), scale=0.3)
    return synthetic.render(index % 9, index, spec)


def _digits(rng: Rng, index: int) -> Image.Image:
    from sklearn.datasets import load_digits

    images = load_digits().images
    pixels = (255 - np.round(images[rng.integers(len(images))] * 255 / 16)).astype(np.uint8)
    return Image.fromarray(pixels, "L").convert("RGB").resize((64, 64), Image.Resampling.NEAREST)


SETS: dict[str, Callable[[Rng, int], Image.Image]] = {
    "noise": _noise,
    "blank": _blank,
    "flat": _flat,
    "gradients": _gradients,
    "textures": _textures,
    "photos": _photos,
    "digits": _digits,
}
SET_KEYS = {name: i for i, name in enumerate(SETS)}


def draw(name: str, count: int, size: int, color_mode: str, seed: int) -> np.ndarray:
    """(count, size, size, channels) uint8: `count` images of set `name`, as serving decodes
    them."""
    render = SETS[name]
    out = []
    for index in range(count):
        rng = np.random.default_rng([seed, SET_KEYS[name], index])
        png = encode_png(np.asarray(render(rng, index).convert("RGB")))
        out.append(decode_pixels(png, size, color_mode))
    return np.stack(out)
