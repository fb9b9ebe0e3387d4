"""Preprocessing, augmentation presets, the decode cache and batch inference decoding."""

import pytest
import torch
from imagegen import make_class_folder, write_all_kinds, write_rgb
from PIL import Image

from imgrec.data.cache import DecodedCache, ImageTensorDataset, decode_batch_for_inference
from imgrec.data.dataset import load_dataset
from imgrec.data.decode import open_image
from imgrec.data.transforms import (
    AUGMENT_PRESETS,
    Preprocessing,
    batch_mix,
    eval_transform,
    resize_for_cache,
    train_transform,
)
from imgrec.errors import ImgrecError

P = Preprocessing(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize_size=36)


def test_preprocessing_dict_round_trip():
    p = Preprocessing.from_crop_pct(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert p.resize_size == 256
    d = p.to_dict()
    assert d == {
        "input_size": 224,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize_size": 256,
    }
    assert Preprocessing.from_dict(d) == p
    with pytest.raises(ImgrecError, match="incomplete or invalid"):
        Preprocessing.from_dict({"input_size": 224})
    with pytest.raises(ImgrecError, match="input_size <= resize_size"):
        Preprocessing(224, (0.5,) * 3, (0.5,) * 3, 200)


@pytest.mark.parametrize(("size", "expected"), [((80, 40), (3, 36, 72)), ((30, 60), (3, 72, 36))])
def test_resize_for_cache_short_side(size, expected):
    t = resize_for_cache(Image.new("RGB", size, (10, 200, 30)), P)
    assert tuple(t.shape) == expected and t.dtype == torch.uint8 and t.is_contiguous()
    assert t[:, 5, 5].tolist() == [10, 200, 30]


def test_eval_transform_crops_and_normalises():
    x = eval_transform(P)(torch.full((3, 36, 50), 255, dtype=torch.uint8))
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, torch.ones_like(x))  # (1 - 0.5) / 0.5


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_train_presets_shapes(preset):
    torch.manual_seed(0)
    transform = train_transform(P, preset)
    for shape in [(3, 36, 36), (3, 36, 60), (3, 70, 36)]:
        x = transform(torch.randint(0, 256, shape, dtype=torch.uint8))
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert torch.isfinite(x).all()


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ImgrecError, match="none, light, default, strong"):
        train_transform(P, "extreme")


@pytest.mark.parametrize("mode", ["mixup", "cutmix", "both"])
def test_batch_mix_gives_soft_targets(mode):
    torch.manual_seed(0)
    mix = batch_mix(mode, num_classes=3, alpha=1.0)
    x = torch.randn(8, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    mixed, soft = mix(x, y)
    assert mixed.shape == x.shape and soft.shape == (8, 3)
    assert torch.allclose(soft.sum(1), torch.ones(8))
    assert (soft >= 0).all() and not torch.equal(mixed, x)
    assert ((soft > 0).sum(1) <= 2).all()  # each image blends at most two labels


def test_batch_mix_none_and_bad_settings():
    assert batch_mix("none", 3) is None
    with pytest.raises(ImgrecError, match="none, mixup, cutmix, both"):
        batch_mix("blend", 3)
    with pytest.raises(ImgrecError, match="positive"):
        batch_mix("mixup", 3, alpha=0)


@pytest.fixture()
def mixed_paths(tmp_path):
    kinds = write_all_kinds(tmp_path, ["rgb_jpeg", "truncated_jpeg", "cmyk_jpeg", "png16"])
    return [kinds["rgb_jpeg"], kinds["truncated_jpeg"], kinds["cmyk_jpeg"], kinds["png16"]]


def test_cache_skips_truncated_file(mixed_paths):
    cache = DecodedCache(mixed_paths, P, workers=2, progress=True)
    skipped = cache.build()
    assert [(s.path, s.reason) for s in skipped] == [(mixed_paths[1], "truncated image")]
    assert cache.valid_indices == [0, 2, 3] and len(cache) == 4
    assert cache.build() == skipped  # second call is a no-op
    assert cache[0].dtype == torch.uint8 and min(cache[0].shape[1:]) == 36
    assert cache.nbytes == sum(cache[i].numel() for i in cache.valid_indices)
    with pytest.raises(KeyError):
        cache[1]

    data = ImageTensorDataset(cache, [0, 1, 1, 0], eval_transform(P))
    assert len(data) == 3
    x, y = data[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1
    xb, yb = next(iter(torch.utils.data.DataLoader(data, batch_size=3)))
    assert xb.shape == (3, 3, 32, 32) and yb.tolist() == [0, 1, 0]


def test_cache_from_dataset_and_dataset_without(tmp_path):
    make_class_folder(tmp_path, {"a": 3, "b": 3})
    bad = write_all_kinds(tmp_path / "a", ["truncated_jpeg"])["truncated_jpeg"]
    ds = load_dataset(tmp_path)
    cache = DecodedCache(ds.paths, P)
    skipped = cache.build()
    clean = ds.without(skipped)
    assert len(clean) == 6 and [s.path for s in clean.skipped] == [bad]
    data = ImageTensorDataset(cache, ds.targets(), train_transform(P, "default"))
    assert len(data) == 6


def test_inference_batch_matches_cached_eval(mixed_paths):
    batch, ok, skipped = decode_batch_for_inference(mixed_paths, P, workers=2)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert ok == [0, 2, 3] and [s.reason for s in skipped] == ["truncated image"]
    cache = DecodedCache(mixed_paths, P, workers=1)
    cache.build()
    expected = torch.stack([eval_transform(P)(cache[i]) for i in ok])
    assert torch.equal(batch, expected)  # train-time eval and predict see identical pixels


def test_inference_batch_all_bad(tmp_path):
    kinds = write_all_kinds(tmp_path, ["zero_bytes"])
    batch, ok, skipped = decode_batch_for_inference([kinds["zero_bytes"]], P)
    assert batch.shape == (0, 3, 32, 32) and ok == [] and skipped[0].reason == "zero bytes"


def test_cache_memory_at_default_size(tmp_path):
    p = Preprocessing.from_crop_pct(224, (0.5,) * 3, (0.5,) * 3)
    path = write_rgb(tmp_path / "photo.jpg", size=(640, 480))
    cache = DecodedCache([path], p)
    cache.build()
    assert tuple(cache[0].shape) == (3, 256, 341)
    assert cache.nbytes < 270_000  # ~200-260 KB per image: 3000 images stay under 1 GB
    assert tuple(resize_for_cache(open_image(path), p).shape) == (3, 256, 341)


def test_normalise_in_a_reused_buffer_gives_each_image_its_own_floats():
    """normalise writes channel by channel into a buffer that a batch job reuses: every batch,
    a short last one included, must give exactly the floats of its images one at a time,
    computed as the definition says: (x / 255 - mean) / std in float32."""
    import numpy as np

    from imgrec.data.preprocess import normalise

    p = Preprocessing(8, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), resize_size=9)
    rng = np.random.default_rng(0)
    buffer = np.empty((4, 3, 8, 8), np.float32)
    for n in (4, 3, 1):
        pixels = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        got = normalise(pixels, p, out=buffer[:n])
        scaled = pixels.astype(np.float32) * np.float32(1 / 255)
        mean, std = np.asarray(p.mean, np.float32), np.asarray(p.std, np.float32)
        expected = ((scaled - mean) / std).transpose(0, 3, 1, 2)
        assert got.shape == (n, 3, 8, 8) and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
        for i in range(n):
            np.testing.assert_array_equal(normalise(pixels[i : i + 1], p)[0], got[i])
