"""The one preprocessing function shared by training, evaluation, prediction and the web app.

It imports no TensorFlow on purpose: the web app and the predict CLI run without it. Its output is
float32 pixels in [0, 255]; scaling to what a network expects happens inside the model, so the
exported model and this function are the whole contract between training and serving.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Bump when the function's output changes for the same input; model.json records it and
# loaders refuse a model made with another version.
PREPROCESSING_VERSION = 2  # v2: JPEG draft decoding for large sources

ORIENTATION = 0x0112  # the EXIF tag exif_transpose() acts on

# Transparent pixels are laid on white: most uploads with alpha are drawings on "nothing".
BACKGROUND = (255, 255, 255)

ImageSource = str | Path | bytes | BinaryIO

# Decompression-bomb guard: images with more pixels are refused before decoding. The default
# of params.yaml's image.max_pixels, and of every function here that takes one.
MAX_PIXELS = 40_000_000

COLOR_MODES = {"rgb": 3, "grayscale": 1}  # -> channels


def channels(color_mode: str) -> int:
    """Channels of the pixels decode_pixels gives for a colour mode."""
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be 'rgb' or 'grayscale', not {color_mode!r}")
    return COLOR_MODES[color_mode]


class ImageError(ValueError):
    """The input cannot be turned into a model input; the message says why."""


class ImageTooLargeError(ImageError):
    """More pixels than the configured limit (a decompression-bomb guard)."""


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        if not source:
            raise ImageError("empty file")
        source = io.BytesIO(source)
    try:
        return Image.open(source)
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except Exception as exc:
        error = _image_error(exc, "not an image Pillow can read")
        if error is exc:
            raise
        raise error from None


def _raised_in_pillow(exc: BaseException) -> bool:
    """Whether Pillow was running when `exc` was raised: a frame of its package on the
    traceback. Its ~50 format plugins fail on garbled input with any exception type, from
    their own code or from what they call (struct, zlib, olefile: tests/test_fuzz.py), and
    for untrusted bytes every one of them means "this file cannot be decoded". An exception
    with no Pillow frame on its way up comes from our own code: a bug, never the file's
    fault."""
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}PIL{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _image_error(exc: Exception, what: str) -> Exception:
    """The ImageError to raise for an exception met while reading a file, or the exception
    itself when it is the file system's (a missing file, permissions) or was not raised
    inside Pillow (a bug of ours, which must surface as one)."""
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc  # the file system's error (missing file, permissions), not the image's
    if not _raised_in_pillow(exc):
        return exc
    if isinstance(exc, Image.DecompressionBombError):
        return ImageTooLargeError(f"image too large: {exc}")
    return ImageError(f"{what}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """Why Pillow gave up on a file, for the one ImageError callers see."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# Rows _to_8bit rescales at a time: float64 copies of a whole image at the pixel limit would
# take about a GB.
RESCALE_ROWS = 256


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float images: Pillow's convert() clips them to 255, so rescale by hand.
    A float image with a NaN or infinite pixel is refused: its scale would be NaN, and every
    pixel black."""
    arr = np.asarray(img)
    if img.mode == "F" and not np.isfinite(arr).all():
        raise ImageError("the image has NaN or infinite pixel values")
    peak = float(arr.max(initial=0))
    top = 65535.0 if img.mode.startswith("I;16") or peak > 255 else 255.0
    if img.mode == "F":
        top = max(peak, 1.0)
    out = np.empty(arr.shape, dtype=np.uint8)
    for start in range(0, len(arr), RESCALE_ROWS):
        band = arr[start : start + RESCALE_ROWS].astype(np.float64)
        out[start : start + RESCALE_ROWS] = np.clip(band / top * 255.0, 0, 255).round()
    return Image.fromarray(out, "L")


def _normalise_mode(img: Image.Image, color_mode: str) -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode == "P":
        # Palette images may carry transparency in their info; RGBA makes it explicit.
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba)
    target = "RGB" if color_mode == "rgb" else "L"
    if img.mode == target:
        return img  # convert() would return a copy
    return img.convert(target)  # CMYK, YCbCr, LAB, 1, ... all convert here


# JPEGs at least this many times the target size are decoded at 1/2, 1/4 or 1/8 scale by
# libjpeg itself (Pillow's draft mode): several times faster, and the DCT-domain reduction
# leaves at least DRAFT_MARGIN x the target for the final bilinear resize, so quality holds.
DRAFT_MARGIN = 2


@contextmanager
def _quiet() -> Iterator[None]:
    """Pillow warns (then errors) on huge images with its own global limit; ours comes first.
    Its plugins also warn about every oddity of a damaged file (TIFF tags, EXIF): the outcome,
    pixels or ImageError, is what counts, not a log line per file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        yield


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image too large: {width}x{height} pixels is over the limit of {max_pixels}"
        )
    if width == 0 or height == 0:
        raise ImageError("image has no pixels")


def check_header(source: ImageSource, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone; ImageError when unreadable or too large.

    Cheap (no pixels are decoded), so the split scan can vet every file; a file whose pixel
    data is corrupt passes here and is reported when `prepare` decodes it.
    """
    with _quiet():
        img = _open(source)
        try:
            width, height = (int(v) for v in img.size)
        except (TypeError, ValueError):  # a garbled header can give any "size"
            raise ImageError(f"not an image Pillow can read: bad size {img.size!r}") from None
        finally:
            img.close()
    _check_size(width, height, max_pixels)
    return width, height


def decode_pixels(
    source: ImageSource,
    size: int,
    color_mode: str = "rgb",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Turn a file path, bytes or a binary file object into (size, size, channels) uint8 pixels.

    Applies EXIF orientation, uses the first frame of animations, lays transparency on white,
    converts any Pillow mode to RGB or grayscale and resizes with bilinear filtering.
    Raises ImageError with a readable reason for anything it cannot use.
    """
    channels(color_mode)  # refuses an unknown mode before any work
    with _quiet():
        opened = _open(source)
        img = opened
        try:
            width, height = img.size
            _check_size(width, height, max_pixels)
            img.seek(0)
            if img.format == "JPEG":
                # Only shrinks when both sides stay >= DRAFT_MARGIN x size (EXIF rotation
                # swaps sides, hence the square request). A no-op for small sources.
                img.draft(img.mode, (size * DRAFT_MARGIN, size * DRAFT_MARGIN))
            if img.getexif().get(ORIENTATION, 1) != 1:
                # Only then: without a rotation exif_transpose still returns a full copy.
                img = ImageOps.exif_transpose(img) or img
            img.load()
            img = _normalise_mode(img, color_mode)
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        except Exception as exc:  # corrupt data surfaces here, when pixels are read
            error = _image_error(exc, "corrupt or truncated image")
            if error is exc:
                raise
            raise error from None
        finally:
            opened.close()
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[..., np.newaxis]
    return arr


def load_image(
    source: ImageSource,
    size: int,
    color_mode: str = "rgb",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """decode_pixels as float32 in [0, 255]: what the model takes (it scales inside itself).

    The pipeline stores decode_pixels' uint8 output once (stage `prepare`) and casts it the
    same way, so a stored image and this function agree exactly.
    """
    return decode_pixels(source, size, color_mode, max_pixels).astype(np.float32)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (h, w), (h, w, 1) or (h, w, 3) pixels as PNG bytes (grayscale or RGB)."""
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels).save(
        buf, format="PNG"
    )
    return buf.getvalue()
