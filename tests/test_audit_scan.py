"""scan_images: one pass per file that yields facts for the audit, or a reason it is unusable."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from imagegen import BAD_KINDS, GOOD_KINDS, SIZE, write_all_kinds, write_rgb
from PIL import Image, ImageFilter

from imgrec.data.decode import UnreadableImage
from imgrec.data.facts import THUMB_SIZE, ImageFacts, scan_image, scan_images

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "imgrec" / "sample" / "hymenoptera"


def _sample_photos() -> list[Path]:
    return sorted(SAMPLE.rglob("*.jpg"))


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    return write_all_kinds(tmp_path_factory.mktemp("kinds"))


@pytest.fixture(scope="module")
def scanned(kinds):
    paths = list(kinds.values())
    facts, skipped = scan_images(paths, workers=2)
    return dict(zip(kinds, facts, strict=True)), skipped


def _bits(x: int) -> int:
    return bin(x).count("1")


def test_every_good_kind_gives_facts_in_input_order(kinds, scanned):
    facts, _ = scanned
    for kind in GOOD_KINDS:
        f = facts[kind]
        assert isinstance(f, ImageFacts), kind
        assert f.path == kinds[kind]
        assert 0 <= f.phash < 2**64


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_kinds_skipped_with_decode_reason(kinds, scanned, kind):
    facts, skipped = scanned
    assert facts[kind] is None
    reasons = {s.path: s.reason for s in skipped}
    assert reasons[kinds[kind]] == BAD_KINDS[kind]


def test_skipped_lists_exactly_the_bad_files(kinds, scanned):
    _, skipped = scanned
    assert sorted(s.path for s in skipped) == sorted(kinds[k] for k in BAD_KINDS)


def test_missing_file_is_skipped_not_raised(tmp_path):
    facts, skipped = scan_images([tmp_path / "nope.jpg"])
    assert facts == [None]
    assert [s.reason for s in skipped] == ["file not found"]
    with pytest.raises(UnreadableImage, match="file not found"):
        scan_image(tmp_path / "nope.jpg")


def test_empty_input():
    assert scan_images([]) == ([], [])


def test_header_facts(kinds, scanned):
    facts, _ = scanned
    expected = {
        "rgb_jpeg": ("RGB", "JPEG"),
        "rgb_png": ("RGB", "PNG"),
        "gray_l": ("L", "PNG"),
        "palette_transparent": ("P", "PNG"),
        "rgba": ("RGBA", "PNG"),
        "cmyk_jpeg": ("CMYK", "JPEG"),
        "png16": ("I;16", "PNG"),
        "animated_gif": ("P", "GIF"),
        "rgb_webp": ("RGB", "WEBP"),
    }
    for kind, (mode, file_format) in expected.items():
        assert (facts[kind].mode, facts[kind].file_format) == (mode, file_format), kind
    for kind in GOOD_KINDS:
        f = facts[kind]
        data = kinds[kind].read_bytes()
        assert f.n_bytes == len(data)
        assert f.sha256 == hashlib.sha256(data).hexdigest()


def test_size_after_exif_rotation(scanned):
    facts, _ = scanned
    for kind in GOOD_KINDS:
        f = facts[kind]
        rotated = kind == "exif_rotated"
        assert (f.width, f.height) == (SIZE[::-1] if rotated else SIZE), kind
        assert f.exif_rotated is rotated, kind


def test_alpha_only_when_some_pixel_is_transparent(tmp_path, scanned):
    facts, _ = scanned
    assert {k for k in GOOD_KINDS if facts[k].has_alpha} == {"palette_transparent", "rgba"}
    opaque = tmp_path / "opaque_rgba.png"
    Image.new("RGBA", SIZE, (10, 200, 30, 255)).save(opaque)
    half = tmp_path / "half.png"
    im = Image.new("RGBA", SIZE, (10, 200, 30, 255))
    im.putpixel((3, 3), (10, 200, 30, 128))
    im.save(half)
    (f_opaque, f_half), _ = scan_images([opaque, half])
    assert f_opaque.mode == "RGBA" and not f_opaque.has_alpha
    assert f_half.has_alpha


def test_grayscale(tmp_path, scanned):
    facts, _ = scanned
    assert {k for k in GOOD_KINDS if facts[k].grayscale} == {"gray_l", "png16", "float_tiff"}
    # A gray photo saved as an RGB JPEG: chroma noise must not make it "colour".
    photo = np.asarray(Image.open(_sample_photos()[0]).convert("L"))
    gray_rgb = tmp_path / "gray_as_rgb.jpg"
    Image.fromarray(np.stack([photo] * 3, axis=2), "RGB").save(gray_rgb, quality=75)
    (f,), _ = scan_images([gray_rgb])
    assert f.mode == "RGB" and f.grayscale
    (colour,), _ = scan_images([_sample_photos()[0]])
    assert not colour.grayscale


def test_brightness(tmp_path):
    dark = write_rgb(tmp_path / "dark.png", colour=(8, 8, 8))
    bright = write_rgb(tmp_path / "bright.png", size=(64, 64), colour=(250, 250, 250))
    Image.new("L", (64, 64), 250).save(bright)
    (f_dark, f_bright), _ = scan_images([dark, bright])
    assert f_dark.brightness < 15
    assert f_bright.brightness == pytest.approx(250, abs=1)


def test_blurred_copy_scores_far_lower(tmp_path):
    original = _sample_photos()[3]
    blurred = tmp_path / "blurred.jpg"
    Image.open(original).filter(ImageFilter.GaussianBlur(3)).save(blurred, quality=95)
    (f_orig, f_blur), _ = scan_images([original, blurred])
    assert f_blur.blur < 0.2 * f_orig.blur


def test_blur_compares_across_sizes(tmp_path):
    """The same photo at twice its size scores about the same: measured at a fixed size."""
    original = _sample_photos()[3]
    im = Image.open(original)
    big = tmp_path / "big.png"
    im.resize((im.width * 2, im.height * 2), Image.Resampling.LANCZOS).save(big)
    (f_orig, f_big), _ = scan_images([original, big])
    assert 0.6 < f_big.blur / f_orig.blur < 1.6
    assert _bits(f_orig.phash ^ f_big.phash) <= 4


def test_phash_stable_under_recompression_and_distinct_across_photos(tmp_path):
    photos = _sample_photos()[:12]
    copies = []
    for i, p in enumerate(photos):
        copies.append(tmp_path / f"{i}.jpg")
        Image.open(p).save(copies[-1], quality=65)
    facts, skipped = scan_images(photos + copies)
    assert not skipped
    originals, recompressed = facts[:12], facts[12:]
    for o, c in zip(originals, recompressed, strict=True):
        assert _bits(o.phash ^ c.phash) <= 6
        assert o.sha256 != c.sha256
    distances = [
        _bits(a.phash ^ b.phash) for i, a in enumerate(originals) for b in originals[i + 1 :]
    ]
    assert min(distances) > 12


def test_big_image_thumbnail_path(tmp_path):
    """Large JPEGs decode at reduced scale and still tell sharp from blurred; a panorama
    keeps a bounded thumbnail."""
    stripes = np.zeros((1500, 2000), dtype=np.uint8)
    stripes[:, (np.arange(2000) // 60) % 2 == 1] = 255
    sharp, soft = tmp_path / "sharp.jpg", tmp_path / "soft.jpg"
    Image.fromarray(stripes).convert("RGB").save(sharp, quality=90)
    Image.open(sharp).filter(ImageFilter.GaussianBlur(40)).save(soft, quality=90)
    pano = tmp_path / "pano.png"
    Image.new("RGB", (THUMB_SIZE * 40, 40), (90, 120, 200)).save(pano)
    (f_sharp, f_soft, f_pano), skipped = scan_images([sharp, soft, pano])
    assert not skipped
    assert (f_sharp.width, f_sharp.height) == (2000, 1500)
    assert f_sharp.grayscale and not f_pano.grayscale
    assert f_sharp.blur > 10 * f_soft.blur
    assert (f_pano.width, f_pano.height) == (THUMB_SIZE * 40, 40)
    assert f_pano.blur == pytest.approx(0, abs=1)


def test_real_sample_scans_without_skips_and_threads_agree():
    photos = _sample_photos()
    assert len(photos) >= 150
    facts, skipped = scan_images(photos, workers=2, progress=True)
    assert not skipped
    assert all(f is not None and f.file_format == "JPEG" for f in facts)
    assert all(0 < f.brightness < 255 and f.blur > 0 for f in facts)
    assert len({f.sha256 for f in facts}) == len(photos)
    serial, _ = scan_images(photos[:20], workers=1)
    assert serial == facts[:20]
