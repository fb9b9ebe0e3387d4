"""load_dataset on the three layouts and on every odd file; Dataset bookkeeping."""

import csv
import os
import shutil

import pytest
from imagegen import GOOD_KINDS, make_class_folder, make_split_folders, write_all_kinds, write_csv

from imgrec.data.dataset import Dataset, Sample, Skipped, load_dataset
from imgrec.errors import ImgrecError


def test_class_folder_layout(tmp_path):
    ds = load_dataset(make_class_folder(tmp_path / "data", {"dogs": 3, "cats": 2}))
    assert ds.classes == ["cats", "dogs"]
    assert len(ds) == 5
    assert ds.class_counts() == {"cats": 2, "dogs": 3}
    assert ds.targets() == [0, 0, 1, 1, 1]
    assert ds.skipped == [] and not ds.has_splits()
    assert all(s.path.is_absolute() and s.split is None for s in ds.samples)
    assert ds.root == tmp_path / "data"


def test_every_odd_file_is_loaded_or_skipped_with_reason(tmp_path):
    root = tmp_path / "data"
    kinds = write_all_kinds(root / "cats")
    make_class_folder(root, {"dogs": 2})
    (root / "cats" / "nested" / "deeper").mkdir(parents=True)
    write_all_kinds(root / "cats" / "nested" / "deeper", ["rgb_png"])
    (root / "cats" / "readme.txt").write_text("not an image")
    (root / "cats" / "Thumbs.db").write_bytes(b"\x00\x01")
    write_all_kinds(root / "cats" / ".hidden", ["rgb_png"])
    write_all_kinds(root / ".git", ["rgb_png"])
    write_all_kinds(root / "__MACOSX" / "cats", ["rgb_png"])
    (root / "cats" / ".DS_Store.jpg").write_bytes(b"junk")

    ds = load_dataset(root)
    assert ds.classes == ["cats", "dogs"]
    loaded = {s.path for s in ds.samples}
    for kind in GOOD_KINDS:
        assert kinds[kind] in loaded, kind
    assert root / "cats" / "nested" / "deeper" / "rgb.png" in loaded
    # Header-only probing cannot see truncation; the decode cache reports it later.
    assert kinds["truncated_jpeg"] in loaded
    reasons = {s.path: s.reason for s in ds.skipped}
    assert reasons == {
        kinds["zero_bytes"]: "zero bytes",
        kinds["text_as_png"]: "not an image",
        kinds["dir_named_jpg"]: "a directory, not an image file",
        kinds["png_bomb"]: "decompression bomb: 400000000 pixels",
    }
    assert len(ds) == len(GOOD_KINDS) + 1 + 1 + 2
    assert (root / "cats" / "chat noir é.jpg") in loaded
    assert (root / "cats" / "UPPER.JPG") in loaded


def test_one_class_folder_loads(tmp_path):
    ds = load_dataset(make_class_folder(tmp_path / "d", {"ants": 3}))
    assert ds.classes == ["ants"] and len(ds) == 3


def test_split_folder_layout_normalises_names(tmp_path):
    root = make_split_folders(
        tmp_path / "d",
        {"train": {"ants": 3, "bees": 3}, "valid": {"ants": 1, "bees": 2}, "Test": {"ants": 1}},
    )
    ds = load_dataset(root)
    assert ds.has_splits()
    assert ds.classes == ["ants", "bees"]
    assert {s.split for s in ds.samples} == {"train", "val", "test"}
    val = ds.subset("validation")
    assert len(val) == 3 and val.classes == ds.classes and val.skipped == []
    assert len(ds.subset("train")) == 6
    assert ds.subset("test").class_counts() == {"ants": 1, "bees": 0}
    with pytest.raises(ImgrecError, match="Unknown split 'dev'"):
        ds.subset("dev")


def test_class_named_test_with_images_is_a_class(tmp_path):
    ds = load_dataset(make_class_folder(tmp_path / "d", {"test": 2, "prod": 2}))
    assert ds.classes == ["prod", "test"] and not ds.has_splits()


def test_mixed_split_and_class_folders_refused(tmp_path):
    root = make_split_folders(tmp_path / "d", {"train": {"a": 1, "b": 1}})
    make_class_folder(root, {"extra": 1})
    with pytest.raises(ImgrecError, match="mixes split folders"):
        load_dataset(root)


def test_loose_images_at_root(tmp_path):
    root = tmp_path / "d"
    write_all_kinds(root, ["rgb_png"])
    with pytest.raises(ImgrecError, match="Found 1 image directly in .* but no class folders"):
        load_dataset(root)
    make_class_folder(root, {"a": 1, "b": 1})
    ds = load_dataset(root)
    assert len(ds) == 2 and ds.skipped == [Skipped(root / "rgb.png", "not inside a class folder")]


def test_csv_layout_relative_absolute_and_split(tmp_path):
    root = make_class_folder(tmp_path / "imgs", {"a": 3, "b": 3})
    elsewhere = make_class_folder(tmp_path / "other", {"c": 1})
    csv_path = write_csv(
        tmp_path / "meta" / "labels.csv",
        [
            ("../imgs/a/a_000.png", "cat", "train"),
            ("../imgs/a/a_001.png", "cat", "Validation"),
            ("../imgs/b/b_000.png", "dog", " TEST "),
            ("../imgs/b/b_001.png", "dog", ""),
            (str(elsewhere / "c" / "c_000.png"), "dog", "train"),
            ("../imgs/missing.png", "dog", "train"),
            ("../imgs/a/a_000.png", "cat", "train"),
            ("../imgs/a/a_002.png", "", "train"),
        ],
        header=("Path", "label", "split"),
    )
    ds = load_dataset(csv_path)
    assert ds.root == tmp_path / "meta"
    assert ds.classes == ["cat", "dog"]
    got = {(s.path.name, s.label, s.split) for s in ds.samples}
    assert got == {
        ("a_000.png", "cat", "train"),
        ("a_001.png", "cat", "val"),
        ("b_000.png", "dog", "test"),
        ("b_001.png", "dog", None),
        ("c_000.png", "dog", "train"),
    }
    assert not ds.has_splits()
    reasons = sorted(s.reason for s in ds.skipped)
    assert reasons == [
        "file not found",
        "listed again on row 8 of the CSV",
        "no label on row 9 of the CSV",
    ]
    assert ds.relative(root / "a" / "a_000.png") == "../imgs/a/a_000.png"


def test_csv_errors(tmp_path):
    make_class_folder(tmp_path, {"a": 1})
    with pytest.raises(ImgrecError, match="columns path,label"):
        load_dataset(write_csv(tmp_path / "x.csv", [("a/a_000.png",)], header=("file",)))
    with pytest.raises(ImgrecError, match="Unknown split 'holdout' in row 2"):
        load_dataset(
            write_csv(
                tmp_path / "y.csv", [("a/a_000.png", "a", "holdout")], ("path", "label", "split")
            )
        )
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ImgrecError, match="columns path,label"):
        load_dataset(tmp_path / "empty.csv")
    with pytest.raises(ImgrecError, match="No images found"):
        load_dataset(write_csv(tmp_path / "z.csv", []))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "nowhere", "does not exist"),
        (lambda p: p, "No images found"),
        (lambda p: (p / "notes.txt", (p / "notes.txt").write_text("x"))[0], "neither a folder nor"),
    ],
)
def test_load_errors_are_one_sentence(tmp_path, make, match):
    with pytest.raises(ImgrecError, match=match) as info:
        load_dataset(make(tmp_path))
    message = str(info.value)
    assert message.endswith(".") and str(tmp_path) in message


def test_all_images_unreadable(tmp_path):
    write_all_kinds(tmp_path / "a", ["zero_bytes", "text_as_png"])
    with pytest.raises(ImgrecError, match="No readable images .* all 2 image files were skipped"):
        load_dataset(tmp_path)


def test_load_is_independent_of_listing_and_location(tmp_path):
    a = load_dataset(make_class_folder(tmp_path / "one", {"x": 3, "y": 2}))
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    b = load_dataset(tmp_path / "two")
    assert [a.relative(s.path) for s in a.samples] == [b.relative(s.path) for s in b.samples]
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_changes_with_content_and_labels(tmp_path):
    root = make_class_folder(tmp_path / "d", {"x": 3, "y": 2})
    before = load_dataset(root).fingerprint()
    assert len(before) == 64 and load_dataset(root).fingerprint() == before
    target = root / "x" / "x_000.png"
    original = target.read_bytes()
    target.write_bytes(original + b"\x00")  # same image, different bytes
    assert load_dataset(root).fingerprint() != before
    target.write_bytes(original)
    assert load_dataset(root).fingerprint() == before
    os.rename(target, root / "y" / "x_000.png")
    assert load_dataset(root).fingerprint() != before


def test_without_and_write_skipped(tmp_path):
    ds = load_dataset(make_class_folder(tmp_path / "d", {"x": 3, "y": 2}))
    bad = [Skipped(ds.samples[0].path, "truncated image")]
    smaller = ds.without(bad)
    assert len(smaller) == 4 and smaller.classes == ds.classes
    assert smaller.skipped == bad and ds.skipped == []
    out = tmp_path / "run" / "skipped.csv"
    smaller.write_skipped(out)
    with open(out, newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == [["path", "reason"], [str(bad[0].path), "truncated image"]]


def test_with_splits_accepts_relative_and_absolute_keys(tmp_path):
    ds = load_dataset(make_class_folder(tmp_path / "d", {"x": 2, "y": 1}))
    first, second, third = ds.samples
    assigned = ds.with_splits({first.path: "train", ds.relative(second.path): "valid"})
    assert [s.split for s in assigned.samples] == ["train", "val", None]
    assert assigned.subset("val").samples == [Sample(second.path, "x", "val")]
    with pytest.raises(ImgrecError, match="Unknown split"):
        ds.with_splits({third.path: "later"})


def test_dataset_direct_construction(tmp_path):
    ds = Dataset(tmp_path, [Sample(tmp_path / "b.png", "b"), Sample(tmp_path / "a.png", "a")])
    assert ds.classes == ["a", "b"] and ds.targets() == [1, 0] and "images=2" in repr(ds)


def test_csv_in_utf16_loads_and_other_encodings_say_what_to_do(tmp_path):
    """Spreadsheets save "Unicode text" as UTF-16 with a byte-order mark: read it. Other
    encodings are refused with advice, not a codec's byte position (found by the CSV fuzz)."""
    make_class_folder(tmp_path, {"a": 2, "b": 2})
    rows = "".join(f"{c}/{c}_00{i}.png,{c}\u00e9\n" for c in "ab" for i in (0, 1))
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding]
        (tmp_path / "u.csv").write_bytes(bom + f"path,label\n{rows}".encode(encoding))
        assert load_dataset(tmp_path / "u.csv").classes == ["a\u00e9", "b\u00e9"]
    (tmp_path / "latin.csv").write_bytes(f"path,label\n{rows}".encode("latin-1"))
    with pytest.raises(ImgrecError, match="not UTF-8 .*save it as .CSV UTF-8.") as info:
        load_dataset(tmp_path / "latin.csv")
    assert "codec" not in str(info.value)


@pytest.mark.parametrize(
    "rows",
    [
        [("path", "label"), ("a\nb.png", "")],  # the fuzz's first find: a name with a newline
        [("path\r\nlabel", "x")],
        [("path", "label", "split"), ("a/a_000.png", "a", "hold\nout\x1b[2J")],
        [("path", "label", "Site", "site\n")],
    ],
)
def test_errors_quoting_the_csv_are_one_line(tmp_path, rows):
    make_class_folder(tmp_path, {"a": 1})
    path = tmp_path / "x.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(ImgrecError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and "\x1b" not in message, message


@pytest.mark.parametrize(
    "label, problem",
    [("red\x1b[31m", "control characters"), ("a" * 300, "characters long")],
)
def test_class_names_no_model_file_may_carry_are_refused_at_load(tmp_path, label, problem):
    """Training used to accept them and write a model that `info` and `predict` then refused."""
    folder = make_class_folder(tmp_path / "data", {"cats": 2, "dogs": 2})
    images = sorted(folder.rglob("*.png"))
    rows = [(p, "cats") for p in images[:2]] + [(p, label) for p in images[2:]]
    with pytest.raises(ImgrecError, match=problem) as caught:
        load_dataset(write_csv(tmp_path / "data.csv", rows))
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)
