"""Stratified seeded splits, their refusals, and split.csv round trips."""

import pytest
from imagegen import make_class_folder, shuffled, write_csv

from imgrec.data.dataset import Dataset, load_dataset
from imgrec.data.split import check_split, read_split_file, write_split_file
from imgrec.errors import ImgrecError


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(
        make_class_folder(tmp_path_factory.mktemp("d"), {"cats": 20, "dogs": 10, "owls": 2})
    )


def _names(d: Dataset) -> list[str]:
    return [d.relative(s.path) for s in d.samples]


def test_split_is_stratified_and_complete(ds):
    train, val, test = ds.split(0.7, 0.15, 0.15, seed=0)
    assert train.class_counts() == {"cats": 14, "dogs": 6, "owls": 1}
    assert val.class_counts() == {"cats": 3, "dogs": 2, "owls": 1}
    assert test.class_counts() == {"cats": 3, "dogs": 2, "owls": 0}
    every = _names(train) + _names(val) + _names(test)
    assert sorted(every) == sorted(_names(ds)) and len(set(every)) == len(ds)
    for part, name in ((train, "train"), (val, "val"), (test, "test")):
        assert part.classes == ds.classes and part.root == ds.root
        assert all(s.split == name for s in part.samples) and part.has_splits()


def test_split_is_deterministic_and_order_free(ds):
    first = [_names(p) for p in ds.split(seed=3)]
    assert first == [_names(p) for p in ds.split(seed=3)]
    reordered = Dataset(ds.root, shuffled(ds.samples, seed=7), ds.classes)
    assert first == [_names(p) for p in reordered.split(seed=3)]
    assert first != [_names(p) for p in ds.split(seed=4)]


def test_split_without_test_and_small_classes(tmp_path):
    small = load_dataset(make_class_folder(tmp_path, {"a": 2, "b": 3, "c": 4}))
    train, val, test = small.split(0.8, 0.2, 0.0)
    assert len(test) == 0 and test.classes == small.classes
    assert train.class_counts() == {"a": 1, "b": 2, "c": 3}
    assert val.class_counts() == {"a": 1, "b": 1, "c": 1}
    train, val, test = small.split()
    assert train.class_counts() == {"a": 1, "b": 1, "c": 2}
    assert test.class_counts() == {"a": 0, "b": 1, "c": 1}


def test_split_refusals(tmp_path):
    one = load_dataset(make_class_folder(tmp_path / "one", {"ants": 5}))
    with pytest.raises(ImgrecError, match="Found only one class 'ants' in .*at least two\\."):
        one.split()
    tiny = load_dataset(make_class_folder(tmp_path / "tiny", {"ants": 5, "bees": 1}))
    with pytest.raises(ImgrecError, match="Class 'bees' \\(1 image\\) in .* fewer than 2 images"):
        tiny.split()
    ok = load_dataset(make_class_folder(tmp_path / "ok", {"a": 3, "b": 3}))
    for ratios in [(0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.2, 0.0)]:
        with pytest.raises(ImgrecError, match="Split ratios .* sum to 1"):
            ok.split(*ratios)
    assert len(ok.split(0.7, 0.2, 0.1 + 1e-7)[0]) > 0


def test_split_file_round_trip(ds, tmp_path):
    train, val, test = ds.split(seed=1)
    path = tmp_path / "run" / "split.csv"
    write_split_file(path, {"train": train, "val": val, "test": test})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,label,split" and len(lines) == len(ds) + 1
    assert "/" in lines[1] and "\\" not in lines[1] and not lines[1].startswith("/")
    restored = read_split_file(path, load_dataset(ds.root))
    assert restored.has_splits()
    for part in (train, val, test):
        assert _names(restored.subset(part.samples[0].split)) == _names(part)
    # the same file is a dataset CSV: its paths are relative to its own folder
    as_data = load_dataset(path)
    assert sorted(s.path for s in as_data.samples) == sorted(s.path for s in ds.samples)
    assert {s.split for s in as_data.samples} == {"train", "val", "test"}


def test_split_files_written_relative_to_the_data_folder_are_still_read(ds, tmp_path):
    train, val, test = ds.split(seed=1)
    old = tmp_path / "old" / "split.csv"
    old.parent.mkdir()
    rows = [
        (ds.relative(s.path), s.label, name)
        for name, part in (("train", train), ("val", val), ("test", test))
        for s in part.samples
    ]
    write_csv(old, rows, ("path", "label", "split"))
    restored = read_split_file(old, load_dataset(ds.root))
    assert _names(restored.subset("test")) == _names(test)


def test_read_split_file_errors(ds, tmp_path):
    with pytest.raises(ImgrecError, match="does not exist"):
        read_split_file(tmp_path / "none.csv", ds)
    bad_cols = write_csv(tmp_path / "a.csv", [("cats/cats_000.png", "cats")])
    with pytest.raises(ImgrecError, match="lacks split"):
        read_split_file(bad_cols, ds)
    header = ("path", "label", "split")
    unknown = write_csv(tmp_path / "b.csv", [("cats/gone.png", "cats", "train")], header)
    with pytest.raises(ImgrecError, match="1 file\\(s\\) that are not in the dataset .*gone.png"):
        read_split_file(unknown, ds)
    bad_split = write_csv(tmp_path / "c.csv", [("cats/cats_000.png", "cats", "later")], header)
    with pytest.raises(ImgrecError, match="Row 2 .* split 'later'"):
        read_split_file(bad_split, ds)


def test_check_split(tmp_path):
    ds = load_dataset(make_class_folder(tmp_path, {"a": 3, "b": 3}))
    train, val, _ = ds.split(0.6, 0.4, 0.0)
    check_split(train, val)
    with pytest.raises(ImgrecError, match="training set .* is empty"):
        check_split(Dataset(ds.root, [], ds.classes), val)
    with pytest.raises(ImgrecError, match="validation set .* is empty"):
        check_split(train, Dataset(ds.root, [], ds.classes))
    only_a = Dataset(ds.root, [s for s in train.samples if s.label == "a"], ds.classes)
    with pytest.raises(ImgrecError, match="Class 'b' has no training images"):
        check_split(only_a, val)


def test_groups_stay_in_one_split_and_keep_the_ratios(tmp_path):
    ds = load_dataset(make_class_folder(tmp_path, {"cats": 40, "dogs": 40}))
    # clusters of 2-4 copies, as the audit's duplicate search reports them
    groups = [i // (2 + i % 3) for i in range(len(ds))]
    train, val, test = ds.split(0.7, 0.15, 0.15, seed=1, groups=groups)
    where = {s.path: s.split for part in (train, val, test) for s in part.samples}
    by_group: dict[int, set] = {}
    for key, sample in zip(groups, ds.samples, strict=True):
        by_group.setdefault(key, set()).add(where[sample.path])
    assert all(len(splits) == 1 for splits in by_group.values())
    assert len(train) + len(val) + len(test) == len(ds)
    for part, share in ((train, 0.7), (val, 0.15), (test, 0.15)):
        for n in part.class_counts().values():
            assert abs(n - share * 40) <= 4  # whole groups of up to 4 move together


def test_singleton_groups_split_like_no_groups(ds):
    plain = [_names(p) for p in ds.split(seed=2)]
    assert plain == [_names(p) for p in ds.split(seed=2, groups=list(range(len(ds))))]
    with pytest.raises(ValueError, match="group keys"):
        ds.split(groups=[0])
