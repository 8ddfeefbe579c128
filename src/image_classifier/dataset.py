"""Decode a split's images into arrays, once per stage run (never once per epoch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from image_classifier import config
from image_classifier.manifests import read_manifest
from image_classifier.params import ImageParams
from image_classifier.preprocessing import ImageError, load_image


@dataclass(frozen=True)
class Arrays:
    x: np.ndarray  # (n, size, size, channels) float32 in [0, 255]
    y: np.ndarray  # (n,) int class indices into `classes`
    paths: tuple[str, ...]


def decode(
    rows: Sequence[tuple[str, str]], classes: Sequence[str], image: ImageParams, desc: str = ""
) -> Arrays:
    index = {name: i for i, name in enumerate(classes)}
    x = np.empty((len(rows), image.size, image.size, image.channels), dtype=np.float32)
    y = np.empty(len(rows), dtype=np.int64)
    for i, (path, label) in enumerate(tqdm(rows, desc=f"decoding {desc}", unit="img")):
        if label not in index:
            raise ValueError(f"{path}: label {label!r} is not one of the model's classes {classes}")
        try:
            x[i] = load_image(path, image.size, image.color_mode, image.max_pixels)
        except (ImageError, OSError) as exc:
            raise ImageError(f"{path}: {exc} (re-run the split stage?)") from None
        y[i] = index[label]
    return Arrays(x, y, tuple(path for path, _ in rows))


def load_split(split: str, classes: Sequence[str], image: ImageParams) -> Arrays:
    return decode(read_manifest(config.manifest_path(split)), classes, image, desc=split)
