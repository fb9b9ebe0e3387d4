"""Split manifests (split.csv) so a run's train/val/test assignment can be reproduced exactly.

A split.csv is also a dataset CSV (path,label,split) that every command reads: its paths are
relative to the file's own folder, the rule of every dataset CSV, so `imgrec evaluate MODEL
runs/x/split.csv` finds the same images `imgrec train --split-file` does. Split files written
before this rule (paths relative to the data folder) are still read.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from imgrec.data.dataset import SPLIT_ALIASES, Dataset, _absolute, _relative, read_csv_rows
from imgrec.errors import ImgrecError

_COLUMNS = ("path", "label", "split")


def read_split_file(path: Path, dataset: Dataset) -> Dataset:
    """Apply a split.csv (paths relative to its own folder, or, in older files, to
    `dataset.root`) to `dataset`; labels come from it."""
    path = Path(path)
    if not path.is_file():
        raise ImgrecError(f"The split file {path} does not exist.")
    rows = read_csv_rows(path, "split file")
    header = [h.strip().lower() for h in rows[0]] if rows else []
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise ImgrecError(
            f"The split file {path} needs columns path,label,split; it lacks {','.join(missing)}."
        )
    col_path, col_split = header.index("path"), header.index("split")
    known = {s.path for s in dataset.samples}
    mapping: dict[Path, str] = {}
    unknown: list[str] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise ImgrecError(f"Row {line_no} of the split file {path} has too few columns.")
        listed = Path(row[col_path].strip())
        file = _absolute(listed, path.parent)
        if file not in known:  # a split file from before paths were relative to it
            file = _absolute(listed, dataset.root)
        value = row[col_split].strip()
        if value.lower() not in SPLIT_ALIASES:
            raise ImgrecError(
                f"Row {line_no} of the split file {path} has split '{value}'; "
                "use train, val or test."
            )
        if file not in known:
            unknown.append(str(_absolute(listed, path.parent)))
        mapping[file] = value
    if unknown:
        raise ImgrecError(
            f"The split file {path} lists {len(unknown)} file(s) that are not in the dataset at "
            f"{dataset.root} (first: {unknown[0]}); use the same data folder as the original run."
        )
    return dataset.with_splits(mapping)


def write_split_file(path: Path, datasets: dict[str, Dataset]) -> None:
    """Write path,label,split rows, paths relative to the split file's folder (posix style)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(os.path.abspath(path.parent))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_COLUMNS)
        for name, ds in datasets.items():
            split = SPLIT_ALIASES.get(name.strip().lower())
            if split is None:
                raise ImgrecError(f"Unknown split '{name}'; use train, val or test.")
            for s in ds.samples:
                writer.writerow([_relative(s.path, folder), s.label, split])


def check_split(train: Dataset, val: Dataset) -> None:
    """Refuse splits that cannot train or validate: empty sets or classes with no train image."""
    if len(train) == 0:
        raise ImgrecError(f"The training set from {train.root} is empty; add training images.")
    if len(val) == 0:
        raise ImgrecError(
            f"The validation set from {val.root} is empty; add a val/ folder or let imgrec split "
            "the data."
        )
    counts = train.class_counts()
    classes = list(dict.fromkeys(train.classes + val.classes))
    missing = [c for c in classes if counts.get(c, 0) == 0]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise ImgrecError(
            f"Class {names} has no training images in {train.root}; add images to it or "
            "remove the folder."
            if len(missing) == 1
            else f"Classes {names} have no training images in {train.root}; add images to "
            "them or remove their folders."
        )
