"""Stage `sample`: write scikit-learn's handwritten digits as PNG class folders into data/raw.

    python -m image_classifier.sample_data

The 1797 8x8 images ship with scikit-learn, so this works offline. Ink is drawn dark on white,
like a digit written on paper, so photos of real digits look like the training data.
The stage refuses to touch a data/raw that holds files it did not write: your own images
are never overwritten.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from image_classifier import atomic, config
from image_classifier.preprocessing import encode_png

log = logging.getLogger(__name__)

MARKER = ".sample"  # hidden, so the scanner ignores it


class ForeignFilesError(RuntimeError):
    pass


def digit_images() -> list[tuple[str, np.ndarray]]:
    """(relative path, 8x8 uint8 image) for every digit, ink dark on white."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (255 - np.round(digits.images * 255 / 16)).astype(np.uint8)
    return [
        (f"{label}/digit_{i:04d}.png", img)
        for i, (img, label) in enumerate(zip(pixels, digits.target, strict=True))
    ]


def foreign_files(root: Path, expected: set[str]) -> list[Path]:
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name != MARKER and p.relative_to(root).as_posix() not in expected
    )


def write_sample(root: Path = config.SAMPLE_DIR) -> int:
    images = digit_images()
    foreign = foreign_files(root, {rel for rel, _ in images})
    if foreign:
        raise ForeignFilesError(
            f"{root} holds {len(foreign)} files the sample did not write (e.g. {foreign[0]}). "
            f"To train on your own images, stop generating the sample: "
            f"`dvc remove sample && dvc add {root}` (see README, 'Your own images')."
        )
    for rel, img in images:
        atomic.write_bytes(root / rel, encode_png(img))
    atomic.write_text(root / MARKER, "written by python -m image_classifier.sample_data\n")
    return len(images)


def main() -> None:
    # Not cli.setup_logging: importing cli would make this stage depend on every module.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        count = write_sample()
    except ForeignFilesError as exc:
        log.error("%s", exc)
        sys.exit(1)
    log.info("wrote %d sample images to %s", count, config.SAMPLE_DIR)


if __name__ == "__main__":
    main()
