"""Seeded, photo-like synthetic datasets: the realistic test data for tests and benchmarks.

    python -m image_classifier.synthetic OUT_DIR --images 5000 --classes 10

Every image is a few hundred pixels wide, JPEG by default, with a textured gradient
background, distractor blobs and one object whose shape and hue give its class. Each image
depends only on (seed, class, index), so any number of worker processes writes the same files.
The 8x8 digits hide every failure real photos cause; these do not.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon", "bar")
# Photo-like frame sizes (landscape, portrait, square), jittered per image.
FRAMES = ((500, 375), (375, 500), (480, 360), (512, 384), (400, 400), (640, 427))


@dataclass(frozen=True)
class Spec:
    """What one dataset looks like. `counts` gives images per class (imbalance, tiny classes)."""

    counts: tuple[int, ...]
    seed: int = 0
    fmt: str = "JPEG"  # JPEG | PNG | mixed (JPEG, PNG, grayscale or palette, RGBA, WebP)
    scale: float = 1.0  # multiplies the frame sizes (0.2 gives ~100 px images for fast tests)
    by_colour_only: bool = False  # every class the same shape: only the hue tells them apart

    @property
    def classes(self) -> list[str]:
        return [class_name(i, self) for i in range(len(self.counts))]


def class_name(i: int, spec: Spec) -> str:
    shape = "blob" if spec.by_colour_only else SHAPES[i % len(SHAPES)]
    return f"c{i:02d}_{shape}"


def _class_hue(i: int, n: int) -> float:
    # Evenly spread hues, offset so shape-sharing classes differ in colour too.
    return (i / max(n, 1) + 0.13 * (i // len(SHAPES))) % 1.0


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "star":
        pts = [(r if k % 2 == 0 else r * 0.45, k * math.pi / 5) for k in range(10)]
    elif kind == "triangle":
        pts = [(r, k * 2 * math.pi / 3) for k in range(3)]
    elif kind == "diamond":
        pts = [(r, k * math.pi / 2) for k in range(4)]
    elif kind == "hexagon":
        pts = [(r, k * math.pi / 3) for k in range(6)]
    else:  # square
        pts = [(r, math.pi / 4 + k * math.pi / 2) for k in range(4)]
    return [(cx + d * math.cos(a + angle), cy + d * math.sin(a + angle)) for d, a in pts]


def draw_object(draw: ImageDraw.ImageDraw, kind: str, box: tuple, fill: tuple, angle: float):
    cx, cy, r = box
    if kind in ("circle", "blob"):
        draw.ellipse((cx - r, cy - r * 0.9, cx + r, cy + r * 0.9), fill=fill)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r * 0.3)))
    elif kind == "cross":
        w = r * 0.35
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif kind == "bar":
        draw.polygon(
            [
                (cx + dx * math.cos(angle) - dy * math.sin(angle),
                 cy + dx * math.sin(angle) + dy * math.cos(angle))
                for dx, dy in ((-r, -r * 0.25), (r, -r * 0.25), (r, r * 0.25), (-r, r * 0.25))
            ],
            fill=fill,
        )  # fmt: skip
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=fill)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def render(label: int, index: int, spec: Spec) -> Image.Image:
    """One RGB photo-like image of class `label`; depends only on (spec.seed, label, index)."""
    rng = np.random.default_rng([spec.seed, label, index])
    w, h = FRAMES[rng.integers(len(FRAMES))]
    w = max(32, int(w * spec.scale * rng.uniform(0.9, 1.1)))
    h = max(32, int(h * spec.scale * rng.uniform(0.9, 1.1)))
    # Background: a random two-colour gradient (uninformative) plus sensor-like noise.
    c0 = np.array(_rgb(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.9)), np.float32)
    c1 = np.array(_rgb(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.9)), np.float32)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    base = c0 * (1 - t) + c1 * t + rng.normal(0, 6, (h, w, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):  # distractors in random colours
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.12) * min(w, h)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_rgb(rng.random(), 0.3, rng.random()))
    n = len(spec.counts)
    kind = "blob" if spec.by_colour_only else SHAPES[label % len(SHAPES)]
    hue = _class_hue(label, n) + rng.normal(0, 0.015)
    fill = _rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    r = rng.uniform(0.18, 0.32) * min(w, h)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    draw_object(draw, kind, (cx, cy, r), fill, rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return img


def encode(img: Image.Image, label: int, index: int, spec: Spec) -> tuple[str, bytes]:
    """(file suffix, bytes) in the spec's format; `mixed` varies format and mode per image."""
    rng = np.random.default_rng([spec.seed, label, index, 1])
    buf = io.BytesIO()
    choice = "JPEG" if spec.fmt == "JPEG" else "PNG" if spec.fmt == "PNG" else None
    if choice is None:
        # Colour-only classes get a palette PNG where others get grayscale: a gray copy of a
        # class told apart by hue alone would carry a label nothing in it supports.
        gray = "PALETTE" if spec.by_colour_only else "GRAY"
        choice = ("JPEG", "PNG", gray, "RGBA", "WEBP")[index % 5]
    if choice == "JPEG":
        img.save(buf, "JPEG", quality=int(rng.integers(75, 96)))
        return ".jpg", buf.getvalue()
    if choice == "GRAY":
        img.convert("L").save(buf, "JPEG", quality=90)
        return ".jpeg", buf.getvalue()
    if choice == "PALETTE":
        img.quantize(256).save(buf, "PNG")
        return ".png", buf.getvalue()
    if choice == "RGBA":
        img.convert("RGBA").save(buf, "PNG")
        return ".png", buf.getvalue()
    if choice == "WEBP":
        img.save(buf, "WEBP", quality=90)
        return ".webp", buf.getvalue()
    img.save(buf, "PNG")
    return ".png", buf.getvalue()


def _write_one(args: tuple[Path, int, int, Spec]) -> None:
    root, label, index, spec = args
    suffix, data = encode(render(label, index, spec), label, index, spec)
    (root / class_name(label, spec) / f"img_{index:06d}{suffix}").write_bytes(data)


def write_dataset(root: Path, spec: Spec, workers: int | None = None) -> list[str]:
    """Write root/<class>/img_NNNNNN.<ext> for every class; returns the class names."""
    for name in spec.classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    jobs = [(root, c, i, spec) for c, count in enumerate(spec.counts) for i in range(count)]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for job in jobs:
            _write_one(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=64))
    return spec.classes


def balanced(images: int, classes: int) -> tuple[int, ...]:
    """Per-class counts adding up to `images`, as even as possible."""
    return tuple(images // classes + (1 if c < images % classes else 0) for c in range(classes))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="JPEG", choices=("JPEG", "PNG", "mixed"))
    args = parser.parse_args(argv)
    spec = Spec(balanced(args.images, args.classes), args.seed, args.format)
    write_dataset(args.out, spec)
    print(f"wrote {args.images} images in {args.classes} classes to {args.out}")


if __name__ == "__main__":
    main()
