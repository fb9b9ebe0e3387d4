"""Prediction's torch-free preprocessing agrees with training's, and extreme shapes stay small."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from runhelpers import sample_files

from imgrec.data.decode import MAX_SIDE, UnreadableImage
from imgrec.data.preprocess import MAX_ASPECT, Preprocessing, model_input, prepare_input
from imgrec.data.transforms import eval_transform, resize_for_cache

P = Preprocessing(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256)


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    "size", [(500, 375), (375, 500), (257, 256), (300, 301), (224, 224), (1999, 250), (64, 48)]
)
def test_numpy_path_matches_training_transforms(size):
    """Same pixels as the cached-tensor path training and evaluation use (torchvision)."""
    img = _noise(*size)
    expected = eval_transform(P)(resize_for_cache(img, P)).numpy()
    got = model_input(img, P)
    assert got.shape == (3, 224, 224) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_numpy_path_matches_on_real_photos():
    for path in sample_files("val", "ants", 3):
        img = Image.open(path).convert("RGB")
        expected = eval_transform(P)(resize_for_cache(img, P)).numpy()
        np.testing.assert_allclose(model_input(img, P), expected, atol=1e-5)


@pytest.mark.parametrize("size", [(20000, 1), (1, 20000), (200000, 1), (1, 200000), (9000, 3)])
def test_thin_images_resize_to_bounded_size(size):
    """A 20000 x 1 PNG once became a 5,120,000 x 256 image (gigabytes) before the crop."""
    img = Image.new("RGB", size, (200, 10, 10))
    cached = resize_for_cache(img, P)
    assert max(cached.shape[1:]) <= MAX_ASPECT * P.resize_size
    assert min(cached.shape[1:]) == P.resize_size
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    if max(size) > MAX_SIDE:  # refused from the header (data/decode.py says why)
        with pytest.raises(UnreadableImage, match="a side over"):
            prepare_input(buffer.getvalue(), P)
        return
    array = prepare_input(buffer.getvalue(), P)
    assert array.shape == (3, 224, 224) and np.isfinite(array).all()


def test_panoramas_are_not_cropped():
    img = _noise(1024, 256)  # 4:1, well under the cap
    assert tuple(resize_for_cache(img, P).shape) == (3, 256, 1024)
