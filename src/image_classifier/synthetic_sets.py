"""A family of small, seeded image folders: what a user trains from scratch on.

    python -m image_classifier.synthetic_sets OUT_DIR --dataset glyphs --seed 3

Each dataset differs from the others in what tells its classes apart (form, texture, glyph,
size and place, grey levels) and in size and balance (60 to 400 images). Each image depends
only on (dataset, seed, class, index). bench/small_data.py trains on every one of them with
several seeds; tests/test_dataset_matrix.py runs a few.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from image_classifier.errors import MissingFileError
from image_classifier.synthetic import draw_object

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSans-Bold.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationMono-Regular.ttf",
    "LiberationSerif-Italic.ttf",
)
Rng = np.random.Generator
Render = Callable[[Rng, int, int], Image.Image]  # (rng, label, side) -> image


@dataclass(frozen=True)
class Dataset:
    counts: tuple[int, ...]  # images per class
    classes: tuple[str, ...]
    render: Render
    about: str


def _colour(rng: Rng, s: tuple[float, float] = (0.5, 1.0), v: tuple[float, float] = (0.5, 1.0)):
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return int(r * 255), int(g * 255), int(b * 255)


def _background(rng: Rng, side: int) -> Image.Image:
    """A random two-colour gradient with noise and a few faint strokes (no blobs: a blob
    would look like the circle classes)."""
    c0 = np.array(_colour(rng, (0.0, 0.5), (0.2, 0.9)), np.float32)
    c1 = np.array(_colour(rng, (0.0, 0.5), (0.2, 0.9)), np.float32)
    t = np.linspace(0, 1, side, dtype=np.float32)
    t = t[:, None, None] if rng.random() < 0.5 else t[None, :, None]
    pixels = c0 * (1 - t) + c1 * t + rng.normal(0, 8, (side, side, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 4)):
        x0, y0, x1, y1 = rng.uniform(0, side, 4)
        draw.line((x0, y0, x1, y1), fill=_colour(rng, (0.1, 0.4), (0.2, 0.9)), width=2)
    return img


def _contrasting(rng: Rng, img: Image.Image) -> tuple[int, int, int]:
    """A random colour whose brightness differs from the background's mean by at least 60."""
    mean = float(np.asarray(img.convert("L")).mean())
    while True:
        fill = _colour(rng)
        if abs(0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] - mean) >= 60:
            return fill


def _object(kinds: Sequence[str], scale: tuple[float, float], hued: bool = False) -> Render:
    """A shape (the class) of random size and place, rotated, on a random background; in a
    random colour, or `hued`: in its class's hue, jittered."""

    def render(rng: Rng, label: int, side: int) -> Image.Image:
        img = _background(rng, side)
        r = rng.uniform(*scale) * side
        cx, cy = rng.uniform(r, side - r, 2)
        angle = rng.uniform(0, 2 * math.pi)
        if hued:
            hue = 0.6 * label / len(kinds) + rng.normal(0, 0.06)
            rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
            fill = tuple(int(c * 255) for c in rgb)
        else:
            fill = _contrasting(rng, img)
        draw_object(ImageDraw.Draw(img), kinds[label], (cx, cy, r), fill, angle)
        return img

    return render


def _blob(rng: Rng, label: int, side: int) -> Image.Image:
    """An ellipse in its class's hue (red, green or blue, jittered), anywhere."""
    img = _background(rng, side)
    hue = label / 3 + rng.normal(0, 0.02)
    rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
    r = rng.uniform(0.2, 0.35) * side
    cx, cy = rng.uniform(r, side - r, 2)
    box = (cx - r, cy - r * rng.uniform(0.6, 1.0), cx + r, cy + r * rng.uniform(0.6, 1.0))
    ImageDraw.Draw(img).ellipse(box, fill=tuple(int(c * 255) for c in rgb))
    return img


def _texture(rng: Rng, label: int, side: int) -> Image.Image:
    """Stripes, checks, dots or speckle in two random colours, at a random scale and angle."""
    period = rng.uniform(6, 14) * side / 96
    angle = rng.uniform(0, math.pi)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    phase = rng.uniform(0, 2 * math.pi, 2)
    if label == 0:  # stripes
        mask = np.sin(2 * math.pi * u / period + phase[0]) > 0
    elif label == 1:  # checks
        mask = (np.sin(2 * math.pi * u / period + phase[0]) > 0) ^ (
            np.sin(2 * math.pi * v / period + phase[1]) > 0
        )
    elif label == 2:  # dots on a grid
        mask = (
            np.cos(2 * math.pi * u / period + phase[0]) * np.cos(2 * math.pi * v / period)
        ) > 0.5
    else:  # speckle: smoothed noise thresholded
        noise = Image.fromarray((rng.random((side, side)) * 255).astype(np.uint8))
        smooth = np.asarray(noise.filter(ImageFilter.GaussianBlur(period / 5)), np.float32)
        mask = smooth > np.median(smooth)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng, v=(0.1, 0.5)), np.float32)
    pixels = np.where(mask[..., None], a, b) + rng.normal(0, 10, (side, side, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _fonts() -> list[Path]:
    found = [d / name for name in FONTS for d in FONT_DIRS if (d / name).is_file()]
    if len(found) < 4:
        raise MissingFileError(
            "the glyph datasets need Debian's fonts-dejavu-core and fonts-liberation packages "
            f"(looked in {', '.join(map(str, FONT_DIRS))})"
        )
    return found


def _glyphs(text: str) -> Render:
    """One character (the class) in a random font, size, place, tilt and colour."""

    def render(rng: Rng, label: int, side: int) -> Image.Image:
        fonts = _fonts()
        img = _background(rng, side)
        font = ImageFont.truetype(
            str(fonts[rng.integers(len(fonts))]), int(side * rng.uniform(0.45, 0.75))
        )
        layer = Image.new("L", (side, side))
        draw = ImageDraw.Draw(layer)
        left, top, right, bottom = draw.textbbox((0, 0), text[label], font=font)
        x = rng.uniform(-left, max(-left, side - right) + 1e-3)
        y = rng.uniform(-top, max(-top, side - bottom) + 1e-3)
        draw.text((x, y), text[label], font=font, fill=255)
        layer = layer.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
        img.paste(Image.new("RGB", img.size, _contrasting(rng, img)), mask=layer)
        return img

    return render


def _grey(render: Render) -> Render:
    def grey(rng: Rng, label: int, side: int) -> Image.Image:
        return render(rng, label, side).convert("L")

    return grey


def _named(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"c{i}_{name}" for i, name in enumerate(names))


FORMS = ("circle", "triangle", "cross", "star")
LETTERS = "AEKRSX"
DATASETS: dict[str, Dataset] = {
    "shapes": Dataset(
        (50, 50, 50, 50), _named(FORMS), _object(FORMS, (0.2, 0.35), hued=True),
        "4 shapes, each in its own hue, on random backgrounds, 200 images",
    ),
    "colour_blobs": Dataset(
        (50, 25, 50), _named(("red", "green", "blue")), _blob,
        "3 classes told apart by colour alone (blobs of the class's hue), 125 images, "
        "imbalanced: what a linear model on pixels gets right",
    ),
    "textures": Dataset(
        (60, 40, 40, 20), _named(("stripes", "checks", "dots", "speckle")), _texture,
        "4 textures in random colours, scales and angles, 160 images, imbalanced",
    ),
    "glyphs": Dataset(
        (30,) * 6, _named(LETTERS), _glyphs(LETTERS),
        "6 letters in 8 Debian fonts, random size, place, tilt and colours, 180 images",
    ),
    "scale_position": Dataset(
        (80, 80, 80), _named(("circle", "square", "triangle")),
        _object(("circle", "square", "triangle"), (0.1, 0.45)),
        "3 shapes from 10 % to 45 % of the side anywhere in the frame, 240 images",
    ),
    "grayscale": Dataset(
        (60, 40, 20), _named(("ring", "bar", "diamond")),
        _grey(_object(("ring", "bar", "diamond"), (0.2, 0.35))),
        "3 shapes in grey levels only (8-bit grayscale files), 120 images, imbalanced",
    ),
    "two_class": Dataset(
        (40, 20), _named(("circle", "hexagon")), _object(("circle", "hexagon"), (0.2, 0.35)),
        "2 close shapes (circle, hexagon), 60 images, imbalanced",
    ),
    "ten_class": Dataset(
        (60, 55, 50, 45, 40, 40, 35, 30, 25, 20), _named("0123456789"),
        _glyphs("0123456789"),
        "10 digits in 8 Debian fonts, 400 images, from 60 down to 20 a class",
    ),
}  # fmt: skip


def image_bytes(name: str, seed: int, label: int, index: int) -> tuple[str, bytes]:
    """(suffix, file bytes) of one image: a PNG or a JPEG, between 96 and 160 pixels a side."""
    data = DATASETS[name]
    rng = np.random.default_rng([seed, DATASET_KEYS[name], label, index])
    img = data.render(rng, label, int(rng.integers(96, 161)))
    buf = io.BytesIO()
    if rng.random() < 0.5:
        img.save(buf, "PNG")
        return ".png", buf.getvalue()
    img.save(buf, "JPEG", quality=int(rng.integers(80, 96)))
    return ".jpg", buf.getvalue()


DATASET_KEYS = {name: i for i, name in enumerate(DATASETS)}


def write(name: str, root: Path, seed: int) -> int:
    """Write root/<class>/<index>.<ext>; returns the number of images."""
    data = DATASETS[name]
    for label, (cls, count) in enumerate(zip(data.classes, data.counts, strict=True)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            suffix, payload = image_bytes(name, seed, label, index)
            (root / cls / f"{index:04d}{suffix}").write_bytes(payload)
    return sum(data.counts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", choices=list(DATASETS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = write(args.dataset, args.out, args.seed)
    print(f"wrote {n} images of {args.dataset!r} to {args.out}")


if __name__ == "__main__":
    main()
