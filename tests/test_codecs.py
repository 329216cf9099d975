import io

import numpy as np
import pytest
from PIL import Image

from fgbg import codecs


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_gray_decodes_with_pillow_to_the_same_pixels(dtype):
    rng = np.random.default_rng(0)
    img = rng.integers(0, np.iinfo(dtype).max, size=(37, 53), dtype=dtype, endpoint=True)
    decoded = np.asarray(Image.open(io.BytesIO(codecs.encode_png_gray(img))))
    assert decoded.shape == img.shape
    np.testing.assert_array_equal(decoded.astype(np.int64), img.astype(np.int64))


def test_png_gray_16_bit_mode_is_16_bit():
    img = np.array([[0, 65535], [256, 1]], np.uint16)
    assert Image.open(io.BytesIO(codecs.encode_png_gray(img))).mode.startswith("I;16")
    np.testing.assert_array_equal(codecs.decode_png(codecs.encode_png_gray(img)), img)


def test_png_gray_rejects_colour():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        codecs.encode_png_gray(np.zeros((4, 4, 3), np.uint8))


def test_jpeg_round_trip_is_close():
    rgb = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3))
    back = codecs.decode_jpeg(codecs.encode_jpeg(rgb, 95))
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fast_grey_png_decode_equals_pillow(dtype):
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, np.iinfo(dtype).max, (19, 23), dtype=dtype, endpoint=True)
    ours = codecs.encode_png_gray(img)
    np.testing.assert_array_equal(codecs.decode_png_gray(ours), codecs.decode_png(ours))
    np.testing.assert_array_equal(codecs.decode_png_gray(ours), img)
    buf = __import__("io").BytesIO()
    Image.fromarray(img).save(buf, format="PNG")  # Pillow's own filters: the fallback path
    np.testing.assert_array_equal(codecs.decode_png_gray(buf.getvalue()), img)
