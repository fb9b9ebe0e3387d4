"""`preview_augmentations` and `imgrec augment-preview`: a PNG grid of original + augmented views.

The Python tests use a 32 px preprocessing so each grid renders in well under a second; the
CLI tests run the real command (default model, 256 px) as a subprocess, as a user does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imagegen import make_class_folder, write_kind
from PIL import Image
from runhelpers import assert_user_error, run_imgrec

from imgrec.data.dataset import load_dataset
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.train import augment_preview
from imgrec.train.augment_preview import (
    CELL_INCHES,
    DPI,
    _spread_over_classes,
    grid_pixels,
    preview_augmentations,
)

P = Preprocessing(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize_size=36)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three classes of generated images (3, 2 and 2 of them), 64x48 px."""
    root = tmp_path_factory.mktemp("preview") / "photos"
    return make_class_folder(root, {"apple": 3, "berry": 2, "cherry": 2}, size=(64, 48))


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_grid_is_written_with_the_size_for_rows_and_columns(photos, tmp_path):
    out = preview_augmentations(photos, "default", tmp_path / "sub" / "grid.png", 4, 3, spec=P)
    assert out == tmp_path / "sub" / "grid.png" and out.is_file()
    assert Image.open(out).size == grid_pixels(4, 1 + 3)
    wider = preview_augmentations(photos, "default", tmp_path / "wide.png", 4, 5, spec=P)
    taller = preview_augmentations(photos, "default", tmp_path / "tall.png", 6, 3, spec=P)
    w, h = Image.open(out).size
    cell = round(CELL_INCHES * DPI)
    assert Image.open(wider).size == (w + 2 * cell, h)  # two more views: two more columns
    assert Image.open(taller).size == (w, h + 2 * cell)  # two more images: two more rows


def test_more_rows_than_images_shows_every_image_once(photos, tmp_path):
    out = preview_augmentations(photos, "light", tmp_path / "all.png", images=50, views=1, spec=P)
    assert Image.open(out).size == grid_pixels(7, 2)  # the folder holds 7 images


def test_images_are_spread_over_the_classes_and_seeded(photos):
    data = load_dataset(photos)
    first = [s.label for s in list(_spread_over_classes(data, seed=0))[:3]]
    assert sorted(first) == ["apple", "berry", "cherry"]
    order = [s.path for s in _spread_over_classes(data, seed=0)]
    assert order == [s.path for s in _spread_over_classes(data, seed=0)]
    assert sorted(order) == sorted(data.paths)  # every image exactly once
    orders = {tuple(s.path for s in _spread_over_classes(data, seed)) for seed in range(5)}
    assert len(orders) > 1


def test_same_seed_same_grid_other_seed_or_preset_other_grid(photos, tmp_path):
    def grid(name, augment="strong", seed=0):
        out = tmp_path / f"{name}.png"
        return _pixels(preview_augmentations(photos, augment, out, 3, 3, seed, spec=P))

    first = grid("a")
    assert np.array_equal(first, grid("b"))
    assert not np.array_equal(first, grid("c", seed=1))
    assert not np.array_equal(first, grid("d", augment="light"))


def test_views_are_the_presets_train_transform(photos, tmp_path, monkeypatch):
    """With "none" the training view is the eval view itself; with "strong" it is not."""
    drawn = {}
    monkeypatch.setattr(
        augment_preview, "_save_grid", lambda rows, p, augment, out: drawn.setdefault(augment, rows)
    )
    for preset in ("none", "strong"):
        preview_augmentations(photos, preset, tmp_path / "g.png", images=2, views=3, spec=P)
    for _, (original, *views) in drawn["none"]:
        assert original.shape == (3, 32, 32)
        assert all(torch.equal(view, original) for view in views)
    for _, (original, *views) in drawn["strong"]:
        assert all(view.shape == original.shape for view in views)
        assert not any(torch.equal(view, original) for view in views)


def test_unreadable_images_are_passed_over(photos, tmp_path):
    root = make_class_folder(tmp_path / "mixed", {"a": 1, "b": 1})
    write_kind(root / "a", "truncated_jpeg")
    out = preview_augmentations(root, "light", tmp_path / "g.png", images=3, views=1, spec=P)
    assert Image.open(out).size == grid_pixels(2, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"augment": "wild"}, "choose one of none, light, default, strong"),
        ({"images": 0}, "at least 1 image"),
        ({"views": 0}, "at least 1 image and 1 view"),
    ],
)
def test_bad_arguments_raise(photos, tmp_path, change, message):
    args = {"augment": "light", "images": 2, "views": 2, **change}
    with pytest.raises(ImgrecError, match=message):
        preview_augmentations(photos, out=tmp_path / "g.png", spec=P, **args)
    assert not (tmp_path / "g.png").exists()


def test_bad_data_raises(tmp_path):
    with pytest.raises(ImgrecError, match="does not exist"):
        preview_augmentations(tmp_path / "missing", "light", tmp_path / "g.png", spec=P)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgrecError, match="No images found"):
        preview_augmentations(tmp_path / "empty", "light", tmp_path / "g.png", spec=P)
    only_bad = tmp_path / "bad"
    write_kind(only_bad / "a", "truncated_jpeg")
    write_kind(only_bad / "b", "truncated_jpeg")
    with pytest.raises(ImgrecError, match="could be decoded"):
        preview_augmentations(only_bad, "light", tmp_path / "g.png", spec=P)


# ---- the command line (its --help is checked with every command's in test_cli.py) ----------
def test_cli_writes_the_grid_and_prints_its_path(photos, tmp_path):
    out = tmp_path / "grid.png"
    result = run_imgrec(
        "augment-preview", photos, "--augment", "strong", "--out", out, "--images", 2, "--views", 2
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == grid_pixels(2, 3)
    assert str(out) in result.stdout


@pytest.mark.parametrize(
    ("where", "extra", "fragments"),
    [
        ("missing", [], ["does not exist"]),
        ("photos", ["--augment", "wild"], ["Unknown augmentation preset 'wild'", "strong"]),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(photos, tmp_path, where, extra, fragments):
    data = {"missing": tmp_path / "missing", "photos": photos}[where]
    result = run_imgrec("augment-preview", data, "--out", tmp_path / "g.png", *extra)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "g.png").exists()
