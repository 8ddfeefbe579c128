import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from image_classifier.preprocessing import ImageError, load_image

from conftest import png


def test_outputs_float_pixels_of_the_requested_shape():
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    rgb = load_image(png(img), 16, "rgb")
    gray = load_image(png(img), 16, "grayscale")
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.float32
    assert gray.shape == (16, 16, 1)
    assert rgb[0, 0].tolist() == [10, 20, 30]


def test_path_bytes_and_file_object_agree(tmp_path):
    data = png(Image.linear_gradient("L").resize((33, 17)))
    path = tmp_path / "x.png"
    path.write_bytes(data)
    a = load_image(path, 8, "grayscale")
    b = load_image(data, 8, "grayscale")
    c = load_image(io.BytesIO(data), 8, "grayscale")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr"]
)
def test_every_mode_loads(mode):
    img = Image.new("RGB", (10, 10), (200, 100, 50)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F", "YCbCr") else "PNG"
    out = load_image(png(img, fmt), 4, "rgb")
    assert out.shape == (4, 4, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255


def test_sixteen_bit_is_rescaled_not_clipped():
    arr = np.full((4, 4), 32768, dtype=np.uint16)  # half of full scale
    out = load_image(png(Image.fromarray(arr)), 4, "grayscale")
    assert abs(float(out.mean()) - 127.5) < 1.0


def test_transparency_is_laid_on_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 0, 255))
    out = load_image(png(img), 4, "grayscale")
    assert out[0, 0, 0] == 0 and out[3, 3, 0] == 255


def test_exif_orientation_is_applied():
    img = Image.new("L", (20, 10), 255)
    img.paste(0, (0, 0, 10, 10))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: displays with the black half on top
    data = png(img.convert("RGB"), "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(data, 10, "grayscale")
    assert out[1, 5, 0] < 60 and out[8, 5, 0] > 200


def test_animated_gif_uses_first_frame():
    frames = [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue(), 8, "grayscale")
    assert out.max() == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am text", "not an image"),
        (png(Image.new("RGB", (64, 64)))[:60], "corrupt or truncated"),
    ],
)
def test_bad_input_raises_image_error(data, reason):
    with pytest.raises(ImageError, match=reason):
        load_image(data, 8)


def test_pixel_limit_refuses_before_decoding():
    with pytest.raises(ImageError, match="over the limit of 100"):
        load_image(png(Image.new("L", (11, 10))), 8, max_pixels=100)


def test_module_imports_no_tensorflow():
    code = "import sys, image_classifier.preprocessing, image_classifier.litert.classifier; "
    code += "sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize(
    "data", [b"P6\n4\x82 40\n255", b"GIF89a\x01", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"]
)
def test_garbled_headers_are_image_errors_not_crashes(data):
    from image_classifier.preprocessing import check_header

    with pytest.raises(ImageError):
        check_header(data)
    with pytest.raises(ImageError):
        load_image(data, 8)


# The types Pillow's plugins raise on garbled input too: from our own code each is a bug.
OUR_BUGS = [TypeError, ValueError, KeyError, IndexError, AttributeError, OSError]


@pytest.mark.parametrize("error", OUR_BUGS)
def test_a_bug_in_our_own_code_is_not_reported_as_a_bad_image(monkeypatch, error):
    """Only Pillow's failures on a file become ImageError; ours must surface (as a 500)."""
    from PIL import Image as PILImage

    from image_classifier import preprocessing

    def broken(img, color_mode):
        raise error("a bug in _normalise_mode")

    monkeypatch.setattr(preprocessing, "_normalise_mode", broken)
    data = png(PILImage.new("RGB", (4, 4)))
    with pytest.raises(error, match="a bug") as raised:
        preprocessing.decode_pixels(data, 4, "rgb")
    assert not isinstance(raised.value, ImageError)


@pytest.mark.parametrize(
    ("source", "decoded"),
    [((2000, 1500), (1000, 750)), ((4000, 3000), (1000, 750)), ((500, 375), (500, 375))],
)
def test_serving_decodes_large_jpegs_reduced(monkeypatch, model_dir, source, decoded):
    """The web app's path (Classifier.preprocess -> load_image) lets libjpeg decode a large
    upload at 1/2, 1/4 or 1/8 scale (draft mode), never below twice the model's input, and a
    small one at full size."""
    from PIL import JpegImagePlugin

    from image_classifier.litert.classifier import Classifier, ModelCard

    seen = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        seen.append(self.size)  # the size libjpeg will decode at
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    clf = Classifier.from_dir(model_dir)
    clf.card = ModelCard(clf.card.classes, 224, "rgb", clf.card.preprocessing_version)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (source[1], source[0], 3), dtype=np.uint8))
    pixels = clf.preprocess(png(photo, "JPEG"))
    assert pixels.shape == (224, 224, 3)
    assert seen == [decoded]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_image_with_a_non_finite_pixel_is_an_image_error(bad):
    pixels = np.full((8, 8), 3.0, dtype=np.float32)
    pixels[2, 5] = bad
    buf = io.BytesIO()
    Image.fromarray(pixels, "F").save(buf, "TIFF")
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_image(buf.getvalue(), 8, "grayscale")


def test_rescaling_a_band_of_rows_at_a_time_gives_the_whole_images_result(monkeypatch):
    from image_classifier import preprocessing

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 65536, (50, 9)).astype("<u2").tobytes()
    wide = rng.random((50, 9)).astype(np.float32) * 700 - 50
    for img in (Image.frombytes("I;16", (9, 50), raw), Image.fromarray(wide, "F")):
        whole = np.asarray(preprocessing._to_8bit(img))
        monkeypatch.setattr(preprocessing, "RESCALE_ROWS", 7)
        np.testing.assert_array_equal(np.asarray(preprocessing._to_8bit(img)), whole)
        monkeypatch.undo()
