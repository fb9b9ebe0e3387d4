"""Datasets as plain lists of (path, label, split) records, loaded from folders or a CSV.

Nothing here decodes pixels: listing only reads headers, so a 10 000-image folder loads in
seconds and bad files are reported up front instead of crashing an epoch later.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import json
import math
import os
import random
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from imgrec.data.decode import IMAGE_EXTENSIONS, MAX_PIXELS, UnreadableImage, probe_image
from imgrec.errors import ImgrecError
from imgrec.text import class_name_problem, csv_cell, shown

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
_FOLDER_SPLITS = frozenset({"train", "val", "valid", "validation", "test"})
_LOOSE = "not inside a class folder"
_EXPECTED_LAYOUT = (
    "one subfolder per class (DATA/cats/1.jpg, DATA/dogs/2.jpg), train/ val/ test/ folders "
    "each holding class subfolders, or a CSV with columns path,label[,split]"
)


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Sample:
    """One labelled image; `path` is absolute, `split` is train/val/test or None.

    `attributes` holds a CSV's extra columns (camera, site, ...) for per-group evaluation;
    folder datasets share one empty mapping, so they pay nothing for it.
    """

    path: Path
    label: str
    split: str | None = None
    attributes: Mapping[str, str] = field(default_factory=lambda: _NO_ATTRIBUTES, hash=False)


@dataclass(frozen=True)
class Skipped:
    """A file left out of the dataset, with a short human-readable reason."""

    path: Path
    reason: str


class Dataset:
    """Labelled image records under one root; classes are the sorted labels (stable indices)."""

    def __init__(
        self,
        root: Path,
        samples: list[Sample],
        classes: list[str] | None = None,
        skipped: list[Skipped] | None = None,
        content_hashes: Mapping[Path, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.samples = list(samples)
        self.classes = list(classes) if classes is not None else sorted({s.label for s in samples})
        self.skipped = list(skipped) if skipped is not None else []
        # SHA-256 of files known without reading them (shards record their originals')
        self.content_hashes = content_hashes or {}

    def _derive(self, samples: list[Sample], skipped: list[Skipped]) -> Dataset:
        """A dataset of some of these samples: same root, classes and known hashes."""
        return Dataset(self.root, samples, self.classes, skipped, self.content_hashes)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return (
            f"Dataset(root={str(self.root)!r}, images={len(self.samples)}, "
            f"classes={self.classes!r}, skipped={len(self.skipped)})"
        )

    @property
    def paths(self) -> list[Path]:
        """Sample paths in order, as the decode cache wants them."""
        return [s.path for s in self.samples]

    def targets(self) -> list[int]:
        """Class index of every sample, in sample order."""
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[s.label] for s in self.samples]

    def class_counts(self) -> dict[str, int]:
        """Images per class, for every class (zero included), in class order."""
        counts = Counter(s.label for s in self.samples)
        return {c: counts.get(c, 0) for c in self.classes}

    def attribute_names(self) -> list[str]:
        """The extra CSV columns the samples carry, in column order (empty for folders)."""
        names: dict[str, None] = {}
        for s in self.samples:
            names.update(dict.fromkeys(s.attributes))
        return list(names)

    def has_splits(self) -> bool:
        """True when every sample already carries a split (from folders, CSV or split file)."""
        return bool(self.samples) and all(s.split is not None for s in self.samples)

    def relative(self, path: Path) -> str:
        """`path` relative to the root as a posix string (the form written to CSV files)."""
        return _relative(Path(path), self.root)

    def subset(self, split: str) -> Dataset:
        """The samples of one split, keeping the class list so indices stay comparable."""
        name = _normalise_split(split, where="subset()")
        return self._derive([s for s in self.samples if s.split == name], [])

    def split(
        self,
        train: float = 0.7,
        val: float = 0.15,
        test: float = 0.15,
        seed: int = 0,
        groups: Sequence[Hashable] | None = None,
        standalone: bool = True,
    ) -> tuple[Dataset, Dataset, Dataset]:
        """Stratified, seeded split that depends only on file names, not listing order.

        Each class gets at least one training image, one validation image when `val` > 0,
        and one test image when `test` > 0 and the class has three or more images.
        `groups` (one key per sample, e.g. duplicate clusters from the audit) keeps every
        group inside one split, so copies of a photo cannot leak from train into val or test.
        `standalone=False` splits images that join an existing split (`imgrec retrain`): one
        class, or a class with a single image, is then fine.
        """
        _check_ratios(train, val, test)
        if standalone:
            self._check_splittable()
        if groups is not None and len(groups) != len(self.samples):
            raise ValueError(f"got {len(groups)} group keys for {len(self.samples)} samples")
        units = self._split_units(groups, seed)
        targets = {
            label: dict(zip(("val", "test"), _split_counts(n, val, test), strict=True))
            for label, n in self.class_counts().items()
        }
        for label, n in self.class_counts().items():
            targets[label]["train"] = n - targets[label]["val"] - targets[label]["test"]
        placed: dict[str, Counter] = {name: Counter() for name in SPLITS}
        parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
        for unit in units:
            name = _neediest_split(unit, targets, placed)
            placed[name].update(s.label for s in unit)
            parts[name].extend(dataclasses.replace(s, split=name) for s in unit)
        return tuple(  # type: ignore[return-value]
            self._derive(_sorted(parts[name], self.root), []) for name in SPLITS
        )

    def _split_units(self, groups: Sequence[Hashable] | None, seed: int) -> list[list[Sample]]:
        """Samples that must share a split, biggest groups first, then each class's images
        in a seeded order (a group's order is seeded by its first file name)."""
        keys = groups if groups is not None else range(len(self.samples))
        by_key: dict[Hashable, list[Sample]] = {}
        for key, sample in zip(keys, self.samples, strict=True):
            by_key.setdefault(key, []).append(sample)
        units = [sorted(u, key=lambda s: self.relative(s.path)) for u in by_key.values()]
        order = {}
        for label in self.classes:
            names = sorted(self.relative(u[0].path) for u in units if u[0].label == label)
            random.Random(f"{seed}:{label}").shuffle(names)
            order.update((name, i) for i, name in enumerate(names))
        return sorted(units, key=lambda u: (-len(u), order[self.relative(u[0].path)], u[0].label))

    def with_splits(self, splits: dict[Path, str]) -> Dataset:
        """Assign splits from a path -> split mapping; unlisted samples get no split."""
        mapping = {
            _absolute(Path(p), self.root): _normalise_split(v, where="the split mapping")
            for p, v in splits.items()
        }
        samples = [dataclasses.replace(s, split=mapping.get(s.path)) for s in self.samples]
        return self._derive(samples, self.skipped)

    def without(self, bad: list[Skipped]) -> Dataset:
        """Drop files found unreadable later (e.g. truncated at decode time) and record why."""
        drop = {Path(b.path) for b in bad}
        samples = [s for s in self.samples if s.path not in drop]
        return self._derive(samples, self.skipped + list(bad))

    def fingerprint(self) -> str:
        """SHA-256 over (relative path, label, content hash) of every sample, order-free."""
        known = self.content_hashes

        def digest(path: Path) -> str:
            return known.get(path) or _file_sha256(path)

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            digests = list(pool.map(digest, self.paths))
        rows = sorted(
            (self.relative(s.path), s.label, d) for s, d in zip(self.samples, digests, strict=True)
        )
        h = hashlib.sha256()
        for row in rows:
            h.update(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
        return h.hexdigest()

    def write_skipped(self, path: Path) -> None:
        """Write the skipped files as CSV (path,reason) so people can find and fix them; a
        cell that would start a spreadsheet formula (a file named =x.jpg) gets a leading quote."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "reason"])
            for s in self.skipped:
                writer.writerow([csv_cell(str(s.path)), csv_cell(s.reason)])

    def _check_splittable(self) -> None:
        counts = Counter(s.label for s in self.samples)
        if not counts:
            raise ImgrecError(f"The dataset at {self.root} has no images to split.")
        if len(counts) < 2:
            (only,) = counts
            raise ImgrecError(
                f"Found only one class '{only}' in {self.root}; a classifier needs at least two."
            )
        small = sorted(c for c, n in counts.items() if n < 2)
        if small:
            names = ", ".join(f"'{c}' ({counts[c]} image)" for c in small)
            raise ImgrecError(
                f"Class {names} in {self.root} has fewer than 2 images; each class needs at "
                "least one image to train on and one to validate on."
                if len(small) == 1
                else f"Classes {names} in {self.root} have fewer than 2 images each; each class "
                "needs at least one image to train on and one to validate on."
            )


def existing_dataset_path(source: str | Path) -> Path:
    """`source` as an absolute path; ImgrecError when nothing is there. The CLI calls it
    while it reads its arguments, so a mistyped folder is said at once, not after seconds
    of imports."""
    path = Path(os.path.abspath(Path(source).expanduser()))
    if not path.exists():
        raise ImgrecError(f"The dataset path {path} does not exist.")
    return path


def load_dataset(source: str | Path, *, max_pixels: int = MAX_PIXELS) -> Dataset:
    """Load a class-folder tree, a train/val/test tree, or a path,label[,split] CSV."""
    path = existing_dataset_path(source)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ImgrecError(
                f"{path} is neither a folder nor a .csv file; point imgrec at {_EXPECTED_LAYOUT}."
            )
        dataset = _load_csv(path, max_pixels)
    elif path.is_dir():
        dataset = _load_folder(path, max_pixels)
    else:
        raise ImgrecError(f"{path} is neither a folder nor a .csv file.")
    if not dataset.samples:
        if dataset.skipped and all(s.reason == _LOOSE for s in dataset.skipped):
            n = len(dataset.skipped)
            raise ImgrecError(
                f"Found {n} image{'s' if n > 1 else ''} directly in {path} but no class folders; "
                f"put each class's images in its own subfolder, e.g. {path / 'cats' / '1.jpg'}."
            )
        if dataset.skipped:
            first = dataset.skipped[0]
            raise ImgrecError(
                f"No readable images in {path}: all {len(dataset.skipped)} image files were "
                f"skipped (for example {shown(first.path.name)}: {shown(first.reason)})."
            )
        raise ImgrecError(f"No images found in {path}; expected {_EXPECTED_LAYOUT}.")
    return dataset


def _load_folder(root: Path, max_pixels: int) -> Dataset:
    """Detect the folder layout (class folders or split folders) and list it."""
    subdirs = _visible_dirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in _FOLDER_SPLITS and _holds_classes(d)]
    skipped = [Skipped(f, _LOOSE) for f in _image_files_in(root)]
    found: list[tuple[Path, str, str | None]] = []
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs]
        if others:
            raise ImgrecError(
                f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
                f"folders ({', '.join(sorted(others))}); put every class folder inside train/, "
                "val/ or test/."
            )
        for split_dir in split_dirs:
            split = SPLIT_ALIASES[split_dir.name.lower()]
            skipped += [Skipped(f, _LOOSE) for f in _image_files_in(split_dir)]
            for class_dir in _visible_dirs(split_dir):
                found += [(f, class_dir.name, split) for f in _walk_class(class_dir, skipped)]
    else:
        for class_dir in subdirs:
            found += [(f, class_dir.name, None) for f in _walk_class(class_dir, skipped)]
    return _probe_all(root, found, skipped, max_pixels)


def read_csv_rows(path: Path, what: str = "CSV file") -> list[list[str]]:
    """Every row of a CSV file in UTF-8 (a byte-order mark is dropped), or in UTF-16 with its
    byte-order mark (a spreadsheet's "Unicode text"); one clear sentence if it cannot be read."""
    try:
        with open(path, "rb") as f:
            utf16 = f.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        with open(path, newline="", encoding="utf-16" if utf16 else "utf-8-sig") as f:
            return list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise ImgrecError(
            f"Cannot read the {what} {path}: it is not {'UTF-16' if utf16 else 'UTF-8'} text "
            f"(byte {exc.start + 1}); save it as 'CSV UTF-8'."
        ) from None
    except (OSError, csv.Error) as exc:
        raise ImgrecError(f"Cannot read the {what} {path}: {exc}.") from exc


def path_label_columns(rows: list[list[str]], csv_path: Path) -> tuple[list[str], int, int]:
    """The CSV's header (lower case) and where its path and label columns are; ImgrecError
    naming the columns it has when either is missing."""
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "path" not in header or "label" not in header:
        raise ImgrecError(
            f"The CSV file {csv_path} needs a header with columns path,label[,split]; "
            f"found {shown(','.join(header)) or 'no header'}."
        )
    return header, header.index("path"), header.index("label")


def _load_csv(csv_path: Path, max_pixels: int) -> Dataset:
    """List a CSV whose paths are relative to the CSV's folder (or absolute)."""
    root = csv_path.parent
    rows = read_csv_rows(csv_path)
    header, col_path, col_label = path_label_columns(rows, csv_path)
    col_split = header.index("split") if "split" in header else None
    extra = _extra_columns(rows[0], (col_path, col_label, col_split), csv_path)
    found: list[tuple[Path, str, str | None]] = []
    attributes: dict[Path, Mapping[str, str]] = {}
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for line_no, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        cells += [""] * (len(header) - len(cells))
        if not cells[col_path]:
            raise ImgrecError(f"Row {line_no} of {csv_path} has an empty path.")
        file = _absolute(Path(cells[col_path]), root)
        if file in seen:
            skipped.append(Skipped(file, f"listed again on row {line_no} of the CSV"))
            continue
        seen.add(file)
        label = cells[col_label]
        if not label:
            skipped.append(Skipped(file, f"no label on row {line_no} of the CSV"))
            continue
        split = None
        if col_split is not None and cells[col_split]:
            split = _normalise_split(cells[col_split], where=f"row {line_no} of {csv_path}")
        found.append((file, label, split))
        if extra:
            attributes[file] = MappingProxyType({name: cells[i] for i, name in extra})
    return _probe_all(root, found, skipped, max_pixels, attributes)


def _extra_columns(
    header: list[str], used: tuple[int | None, ...], csv_path: Path
) -> list[tuple[int, str]]:
    """(index, name) of the columns beyond path,label,split: per-sample attributes."""
    extra = [(i, h.strip()) for i, h in enumerate(header) if i not in used and h.strip()]
    seen: set[str] = set()
    for _, name in extra:
        if name.lower() in seen:
            raise ImgrecError(f"The CSV file {csv_path} has two columns named '{shown(name)}'.")
        seen.add(name.lower())
    return extra


def _probe_all(
    root: Path,
    found: list[tuple[Path, str, str | None]],
    skipped: list[Skipped],
    max_pixels: int,
    attributes: dict[Path, Mapping[str, str]] | None = None,
) -> Dataset:
    """Header-check every candidate in parallel (I/O bound on cold disks); keep the good ones."""

    def check(item: tuple[Path, str, str | None]) -> str | None:
        try:
            probe_image(item[0], max_pixels)
        except UnreadableImage as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        reasons = list(pool.map(check, found))
    extra = attributes or {}
    samples = [Sample(f, label, split, extra.get(f, _NO_ATTRIBUTES)) for f, label, split in found]
    good = [s for s, r in zip(samples, reasons, strict=True) if r is None]
    skipped = skipped + [Skipped(s.path, r) for s, r in zip(samples, reasons, strict=True) if r]
    _check_class_names({s.label for s in good})
    return Dataset(root, _sorted(good, root), skipped=sorted(skipped, key=lambda s: str(s.path)))


def _check_class_names(labels: set[str]) -> None:
    """Refuse a label no model file may carry now, not after training (text.py says why)."""
    for label in sorted(labels):
        problem = class_name_problem(label)
        if problem:
            raise ImgrecError(
                f"The class name '{shown(label)}' {problem}; rename its folder or change the "
                "label in the CSV."
            )


def _walk_class(class_dir: Path, skipped: list[Skipped]) -> Iterable[Path]:
    """Image files anywhere below a class folder; directories named like images are skipped."""
    for dirpath, dirnames, filenames in os.walk(class_dir):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if _hidden(d):
                continue
            if Path(d).suffix.lower() in IMAGE_EXTENSIONS:
                skipped.append(Skipped(here / d, "a directory, not an image file"))
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not _hidden(name) and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield here / name


def _visible_dirs(folder: Path) -> list[Path]:
    """Non-hidden sub-folders that are not themselves named like image files."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not _hidden(p.name) and p.suffix.lower() not in IMAGE_EXTENSIONS
    )


def _image_files_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if not _hidden(p.name) and p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir()
    )


def _holds_classes(folder: Path) -> bool:
    """A split folder holds class sub-folders and no loose images (else it is a class)."""
    return bool(_visible_dirs(folder)) and not _image_files_in(folder)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _normalise_split(value: str, *, where: str) -> str:
    name = SPLIT_ALIASES.get(str(value).strip().lower())
    if name is None:
        raise ImgrecError(f"Unknown split '{shown(value)}' in {where}; use train, val or test.")
    return name


def _check_ratios(train: float, val: float, test: float) -> None:
    if min(train, val, test) < 0 or train <= 0 or abs(train + val + test - 1.0) > 1e-6:
        raise ImgrecError(
            f"Split ratios train={train}, val={val}, test={test} are invalid; they must be "
            "non-negative, train must be above 0, and together they must sum to 1."
        )


def _neediest_split(
    unit: list[Sample], targets: dict[str, dict[str, int]], placed: dict[str, Counter]
) -> str:
    """The split whose per-class targets still lack the most of this unit's images; a class
    without training images so far always goes to train first."""
    labels = Counter(s.label for s in unit)
    if any(placed["train"][label] == 0 for label in labels):
        return "train"

    def need(name: str) -> float:
        return sum(
            min(n, targets[label][name] - placed[name][label]) for label, n in labels.items()
        )

    return max(SPLITS, key=lambda name: (need(name), -SPLITS.index(name)))


def _split_counts(n: int, val: float, test: float) -> tuple[int, int]:
    """Per-class (n_val, n_test): rounded shares, with the minimums promised by split()."""
    n_val = math.floor(n * val + 0.5)
    n_test = math.floor(n * test + 0.5)
    if val > 0 and n >= 2:
        n_val = max(n_val, 1)
    if test > 0 and n >= 3:
        n_test = max(n_test, 1)
    while n - n_val - n_test < 1:  # training keeps at least one image: shrink test, then val
        if n_test > (1 if test > 0 and n >= 3 else 0):
            n_test -= 1
        elif n_val > (1 if val > 0 else 0):
            n_val -= 1
        elif n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def _sorted(samples: list[Sample], root: Path) -> list[Sample]:
    return sorted(samples, key=lambda s: (s.label, _relative(s.path, root)))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


def _absolute(path: Path, root: Path) -> Path:
    return Path(os.path.abspath(path if path.is_absolute() else root / path))


def _file_sha256(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise ImgrecError(
            f"Cannot read {path} to fingerprint the dataset: {exc.strerror}."
        ) from exc


def check_known_labels(dataset: Dataset, classes: Sequence[str]) -> None:
    """One clear sentence (ImgrecError) when `dataset` has labels outside `classes`."""
    unknown = sorted(set(dataset.class_counts()) - set(classes))
    if unknown:
        raise ImgrecError(
            f"the data has labels the model does not know: {', '.join(unknown)} "
            f"(model classes: {', '.join(classes)})."
        )
