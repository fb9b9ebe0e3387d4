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
    check_image,
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


@pytest.mark.parametrize("kind", GOOD_KINDS)
def test_check_passes_every_good_kind(kinds, kind):
    assert check_image(kinds[kind]) == Image.open(kinds[kind]).format


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_check_gives_the_decoders_reason_for_every_bad_kind(kinds, kind):
    with pytest.raises(UnreadableImage) as info:
        check_image(kinds[kind])
    assert str(info.value) == BAD_KINDS[kind]


def _photo(fmt: str, **save) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buf, fmt, **save)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "save"),
    [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {})],
    ids=["jpeg", "progressive", "png"],
)
def test_check_refuses_a_file_cut_anywhere_after_its_header(fmt, save):
    data = _photo(fmt, **save)
    assert check_image(data) == fmt
    for fraction in (0.2, 0.5, 0.8, 0.95, 0.999):
        with pytest.raises(UnreadableImage, match="truncated image|not an image"):
            check_image(data[: int(len(data) * fraction)])


def test_check_sees_past_an_exif_thumbnails_end_marker():
    """A photo whose EXIF thumbnail (a whole JPEG inside APP1, end marker included) survived
    while the photo itself was cut short is still a truncated photo."""
    thumbnail = _photo("JPEG")
    exif = Image.Exif()
    exif[0x010E] = "photo"  # ImageDescription, so the block is a real one
    app1_body = exif.tobytes() + thumbnail
    data = _photo("JPEG")
    app1 = b"\xff\xe1" + (len(app1_body) + 2).to_bytes(2, "big") + app1_body
    with_thumb = data[:2] + app1 + data[2:]
    assert check_image(with_thumb) == "JPEG"
    with pytest.raises(UnreadableImage, match="truncated image"):
        check_image(with_thumb[: len(with_thumb) - len(data) // 3])


def test_check_allows_bytes_after_the_end_marker():
    """Phones append a motion photo's video after the JPEG; decoders read such files."""
    data = _photo("JPEG") + b"\x00\x00\x00\x18ftypmp42" + bytes(1000)
    assert check_image(data) == "JPEG"
    open_image(data)


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


def test_flat_dim_16bit_and_non_finite_floats(tmp_path):
    path = tmp_path / "dim.png"
    Image.fromarray(np.full((8, 8), 16384, dtype=np.uint16)).save(path)
    assert open_image(path).getpixel((0, 0)) == (64, 64, 64)  # 16384 / 65535 of 255
    floats = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    floats[0, 0], floats[0, 1] = np.nan, np.inf
    path = tmp_path / "nan.tiff"
    Image.fromarray(floats, mode="F").save(path)
    a = np.asarray(open_image(path))[..., 0]
    assert a[0, 0] == 0 and a[0, 1] == 0 and a.max() == 255  # not finite shows as darkest


def test_high_bit_depth_scaling_memory_is_a_few_bytes_per_pixel():
    """make fuzz found a damaged 33-megapixel file peaking at 1.2 GB in float64 temporaries."""
    import tracemalloc

    from imgrec.data.decode import _scale_to_uint8

    image = Image.new("F", (2, 4_000_000), 0.25)
    image.putpixel((0, 0), 1.0)
    tracemalloc.start()
    try:
        scaled = _scale_to_uint8(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scaled.shape == (4_000_000, 2) and scaled.max() == 255
    assert peak < 12 * 8_000_000, f"{peak / 8e6:.1f} bytes per pixel"  # float64: over 25


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_a_side_over_the_limit_is_refused_from_the_header(mode):
    """A few-kilobyte 2 x 16,777,217 PNG with transparency once took 1.3 GB to decode."""
    from imgrec.data.decode import MAX_SIDE

    buffer = io.BytesIO()
    Image.new(mode, (2, MAX_SIDE + 1)).save(buffer, "PNG")
    with pytest.raises(UnreadableImage, match="a side over 65535 pixels"):
        open_image(buffer.getvalue())
    path_ok = io.BytesIO()
    Image.new(mode, (2, MAX_SIDE)).save(path_ok, "PNG")
    assert open_image(path_ok.getvalue()).size == (2, MAX_SIDE)


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


# ---- files that are not regular files, and Pillow's warnings ----------------------------------
def _decode_within(seconds: float, fn, *args):
    """fn(*args) in a thread; fail (instead of hanging the suite) if it blocks."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(fn, *args).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


@pytest.mark.parametrize("decode", [open_image, probe_image])
def test_odd_file_system_entries_have_plain_reasons(tmp_path, decode):
    """A FIFO is never opened for reading (that blocks until a writer comes); links that lead
    nowhere say so instead of 'file not found' or an errno text."""
    import os

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(tmp_path / "loop2.jpg")
    (tmp_path / "loop2.jpg").symlink_to(loop)
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "gone.jpg")
    expected = {
        fifo: "a named pipe (FIFO), not a file",
        loop: "a symbolic link loop",
        dangling: "a broken symbolic link",
    }
    for path, reason in expected.items():
        with pytest.raises(UnreadableImage) as info:
            _decode_within(10, decode, path)
        assert str(info.value).startswith(reason), (path.name, str(info.value))


def _corrupt_exif_jpeg(path, colour=(200, 0, 0)):
    """A JPEG whose EXIF block promises 100 bytes of camera make at an offset past its end
    (Pillow warns 'Tag data larger than file' or 'Possibly corrupt EXIF data')."""
    import struct

    entries = struct.pack("<HHII", 0x010F, 2, 100, 1000) + struct.pack("<HHII", 0x0112, 3, 1, 1)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + b"\0\0\0\0"
    Image.new("RGB", (16, 8), colour).save(path, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return path


def test_pillow_warnings_name_the_file_even_from_many_threads(tmp_path, caplog):
    """Finding: a Pillow 'corrupt EXIF' warning reached stderr without the file's name. Now
    each decoding thread collects its own file's warnings and logs them with the file's name
    (every time, not once per process), and nothing escapes as a bare warning."""
    from concurrent.futures import ThreadPoolExecutor

    bad = [_corrupt_exif_jpeg(tmp_path / f"exif{i}.jpg") for i in range(6)]
    good = [write_rgb(tmp_path / f"good{i}.png") for i in range(6)]
    caplog.set_level("WARNING", logger="imgrec.data.decode")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("default")  # the interpreter's own: each warning shown once
        with ThreadPoolExecutor(4) as pool:
            mixed = [p for pair in zip(bad, good, strict=True) for p in pair] * 2
            images = list(pool.map(open_image, mixed))
    assert all(im.size == (16, 8) or im.size == SIZE for im in images)
    assert [str(w.message) for w in escaped] == []
    notes = [r.getMessage() for r in caplog.records if r.name == "imgrec.data.decode"]
    for path in bad:
        mine = [n for n in notes if n.startswith(f"{path}: ")]
        assert len(mine) == 2 and all("EXIF" in n or "Tag data" in n for n in mine), notes
    assert not any(str(path) in n for path in good for n in notes)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA", "PCX", "EPS"])
def test_only_the_listed_formats_are_decoded(fmt):
    """Pillow opens dozens of formats (EPS even runs Ghostscript); imgrec reads the ones it
    lists (IMAGE_EXTENSIONS), so a .jpg that is really something else is 'not an image'."""
    buffer = io.BytesIO()
    try:
        Image.new("RGB", (16, 16), (200, 0, 0)).save(buffer, fmt)
    except OSError:  # EPS needs Ghostscript to write; its header is enough here
        buffer = io.BytesIO(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n" + bytes(64))
    with pytest.raises(UnreadableImage, match="^not an image$"):
        open_image(buffer.getvalue())


def test_reasons_are_one_short_line(tmp_path):
    """A decoder's message can hold newlines or be long; the reason is one line, bounded."""
    from imgrec.data.decode import MAX_REASON, _reason

    reason = _reason(ValueError("broken\nheader " + "x" * 1000))
    assert "\n" not in reason and len(reason) <= MAX_REASON
    with pytest.raises(UnreadableImage, match="NUL character"):
        probe_image(tmp_path / "a\x00.jpg")
