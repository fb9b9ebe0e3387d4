"""open_image / probe_image on every kind of file people actually have."""

import io
import warnings

import numpy as np
import pytest
from imagegen import BAD_KINDS, GOOD_KINDS, SIZE, png_bomb_bytes, write_all_kinds, write_rgb
from PIL import Image, ImageFile

from imgrec.data.decode import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    UnreadableImage,
    open_image,
    probe_image,
)
from imgrec.errors import ImgrecError


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    return write_all_kinds(tmp_path_factory.mktemp("kinds"))


def test_constants():
    assert MAX_PIXELS == 89_478_485
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"} == IMAGE_EXTENSIONS
    assert issubclass(UnreadableImage, ImgrecError)


@pytest.mark.parametrize("kind", GOOD_KINDS)
def test_good_kinds_decode_to_rgb(kinds, kind):
    im = open_image(kinds[kind])
    assert im.mode == "RGB"
    assert min(im.size) >= 32
    np.asarray(im)  # fully decoded, no file access needed
    assert probe_image(kinds[kind]) in (SIZE, SIZE[::-1])


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_kinds_raise_short_reason(kinds, kind):
    with pytest.raises(UnreadableImage) as info:
        open_image(kinds[kind])
    assert str(info.value) == BAD_KINDS[kind]


@pytest.mark.parametrize("kind", sorted(set(BAD_KINDS) - {"truncated_jpeg"}))
def test_probe_rejects_bad_kinds_from_header(kinds, kind):
    with pytest.raises(UnreadableImage) as info:
        probe_image(kinds[kind])
    assert str(info.value) == BAD_KINDS[kind]


def test_probe_passes_truncated_header_but_decode_fails(kinds):
    assert probe_image(kinds["truncated_jpeg"]) == (64, 64)
    with pytest.raises(UnreadableImage, match="truncated image"):
        open_image(kinds["truncated_jpeg"])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_exif_orientation_applied(kinds):
    im = open_image(kinds["exif_rotated"])
    assert im.size == (SIZE[1], SIZE[0])
    # Rotated 90° clockwise: the stored black top-left block is now at the top-right.
    assert max(im.getpixel((im.width - 3, 2))) < 40
    assert im.getpixel((2, 2))[0] > 150


def test_transparency_composited_on_white(kinds):
    for kind in ("palette_transparent", "rgba"):
        im = open_image(kinds[kind])
        assert im.getpixel((40, 25)) == (255, 255, 255), kind
        assert im.getpixel((2, 2)) == (255, 0, 0), kind


def test_cmyk_becomes_rgb_red(kinds):
    r, g, b = open_image(kinds["cmyk_jpeg"]).getpixel((20, 20))
    assert r > 200 and g < 40 and b < 40


@pytest.mark.parametrize("kind", ["png16", "float_tiff"])
def test_high_bit_depth_scaled_by_actual_range(kinds, kind):
    a = np.asarray(open_image(kinds[kind]))
    assert a.min() == 0 and a.max() == 255  # not clipped to black / not truncated
    assert (a[..., 0] == a[..., 1]).all()


def test_flat_16bit_keeps_brightness(tmp_path):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(path)
    assert open_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_first_frame(kinds):
    r, g, b = open_image(kinds["animated_gif"]).getpixel((30, 5))
    assert r > 180 and b < 60


def test_bytes_source(kinds):
    im = open_image(kinds["rgb_png"].read_bytes())
    assert im.size == SIZE and im.mode == "RGB"
    with pytest.raises(UnreadableImage, match="zero bytes"):
        open_image(b"")
    with pytest.raises(UnreadableImage, match="not an image"):
        open_image(b"GIF89a? no, just text")
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        open_image(png_bomb_bytes())


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImage, match="file not found"):
        open_image(tmp_path / "nope.jpg")
    with pytest.raises(UnreadableImage, match="file not found"):
        probe_image(tmp_path / "nope.jpg")


def test_bomb_limits(tmp_path):
    # Between PIL's warning limit and 2x it: must be an error, and emit no warning.
    mid = tmp_path / "mid.png"
    mid.write_bytes(png_bomb_bytes(10000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnreadableImage, match="decompression bomb: 100000000 pixels"):
            open_image(mid)
        with pytest.raises(UnreadableImage, match="decompression bomb: 100000000 pixels"):
            probe_image(mid)
    # A caller may raise the limit up to PIL's hard limit (the header is all probe reads).
    assert probe_image(mid, max_pixels=150_000_000) == (10000, 10000)
    # ...or lower it: a real, ordinary image over the limit is refused before decoding.
    small = write_rgb(tmp_path / "small.png", size=(100, 80))
    with pytest.raises(UnreadableImage, match="decompression bomb: 8000 pixels"):
        open_image(small, max_pixels=5000)
    assert open_image(small, max_pixels=8000).size == (100, 80)


def test_draft_decodes_large_jpeg_smaller_but_not_below_target(tmp_path):
    path = write_rgb(tmp_path / "big.jpg", size=(800, 600))
    im = open_image(path, draft=100)
    assert 100 <= min(im.size) < 600 and im.mode == "RGB"
    assert open_image(path).size == (800, 600)


def test_corrupt_body_is_unreadable_not_a_crash(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise, "RGB").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[100:140] = b"\x00" * 40  # damage the compressed pixel stream
    with pytest.raises(UnreadableImage) as info:
        open_image(bytes(data))
    assert 0 < len(str(info.value)) < 80
