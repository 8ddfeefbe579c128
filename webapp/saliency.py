"""Occlusion sensitivity: which parts of the image the prediction depends on.

Grey out one patch at a time and measure how much the predicted class's probability drops.
Needs only the LiteRT classifier (no TensorFlow, no gradients) and one batched inference call.
"""

from __future__ import annotations

import base64

import numpy as np
from PIL import Image

from image_classifier.litert.classifier import Classifier
from image_classifier.preprocessing import encode_png

# A blue -> cyan -> yellow -> red ramp for the overlay.
_RAMP = np.array([[0, 0, 160], [0, 200, 255], [255, 230, 0], [230, 0, 0]], dtype=np.float32)


def occlusion_map(clf: Classifier, x: np.ndarray, target: int) -> np.ndarray:
    """(size, size) map in [0, 1]: how much occluding each pixel lowers p(target)."""
    size = x.shape[0]
    patch = max(2, size // 4)
    stride = max(1, patch // 2)
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    fill = x.mean(axis=(0, 1))
    boxes = [(r, c) for r in starts for c in starts]
    # The occluded copies are made a chunk at a time (49 copies of a 224-px image are 30 MB).
    chunk = clf.max_batch or len(boxes) + 1
    probs = [clf.predict(x[np.newaxis])[:, target]]
    for i in range(0, len(boxes), chunk):
        batch = np.repeat(x[np.newaxis], len(boxes[i : i + chunk]), axis=0)
        for j, (r, c) in enumerate(boxes[i : i + chunk]):
            batch[j, r : r + patch, c : c + patch] = fill
        probs.append(clf.predict(batch)[:, target])
    probs = np.concatenate(probs)
    heat = np.zeros((size, size), dtype=np.float64)
    hits = np.zeros((size, size), dtype=np.float64)
    for (r, c), p in zip(boxes, probs[1:], strict=True):
        heat[r : r + patch, c : c + patch] += max(0.0, float(probs[0] - p))
        hits[r : r + patch, c : c + patch] += 1
    heat /= np.maximum(hits, 1)
    top = heat.max()
    return heat / top if top > 0 else heat


def colorize(heat: np.ndarray) -> np.ndarray:
    """(h, w) in [0, 1] -> (h, w, 3) uint8 through the ramp."""
    pos = heat * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., np.newaxis]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).astype(np.uint8)


def overlay_png(display: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> bytes:
    """Blend the heat map, scaled to the display image, over it; return PNG bytes."""
    height, width = display.shape[:2]
    heat_img = Image.fromarray((heat * 255).astype(np.uint8), "L").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    colours = colorize(np.asarray(heat_img, dtype=np.float32) / 255.0)
    base = display if display.shape[-1] == 3 else np.repeat(display, 3, axis=-1)
    blended = base.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha
    return encode_png(blended.clip(0, 255).astype(np.uint8))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
