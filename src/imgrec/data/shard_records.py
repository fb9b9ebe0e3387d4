"""records.jsonl as compact columns: where each image's bytes are, and its audit facts.

A shard set of 100 000 images is read into numpy arrays: shard, offset, size and CRC-32 cost
20 bytes a record, the audit's facts about 80 (an ImageFacts object with its strings costs
about 1 KB, so they are made only when asked for). Labels and splits are interned strings.
The paths are Path objects, as every Dataset's are: they are what the rest of imgrec keys on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from imgrec.data.facts import ImageFacts
from imgrec.data.shard_tar import RECORDS_FILE
from imgrec.errors import ImgrecError

_AGAIN = "write the shards again"


class FactsColumns(Sequence[ImageFacts | None]):
    """The audit facts of some records in numpy columns; item i is an ImageFacts for paths[i]
    (None where the writer gathered none), made on access."""

    _NUMBERS = (  # field, dtype
        ("phash", np.uint64),
        ("width", np.int32),
        ("height", np.int32),
        ("n_bytes", np.int64),
        ("has_alpha", np.bool_),
        ("exif_rotated", np.bool_),
        ("grayscale", np.bool_),
        ("brightness", np.float64),
        ("blur", np.float64),
    )

    def __init__(self, paths: list[Path], n: int) -> None:
        self.paths = paths  # filled by the caller while it reads, when need be
        self.present = np.zeros(n, dtype=bool)
        self.sha256 = np.zeros(n, dtype="S32")
        self.numbers = {name: np.zeros(n, dtype=dtype) for name, dtype in self._NUMBERS}
        self.names: list[str] = []  # the modes and formats seen; rows keep indices into it
        self.mode = np.zeros(n, dtype=np.int16)
        self.file_format = np.zeros(n, dtype=np.int16)

    def set(self, i: int, facts: dict[str, Any]) -> None:
        """Row i from a record's facts (shard_tar writes them with facts.facts_to_dict)."""
        self.present[i] = True
        self.sha256[i] = bytes.fromhex(facts["sha256"])
        for name, _ in self._NUMBERS:
            self.numbers[name][i] = facts[name]
        self.mode[i] = self._name(facts["mode"])
        self.file_format[i] = self._name(facts["file_format"])

    def _name(self, value: str) -> int:
        if value not in self.names:
            self.names.append(value)
        return self.names.index(value)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, i: int) -> ImageFacts | None: ...
    @overload
    def __getitem__(self, i: slice) -> list[ImageFacts | None]: ...
    def __getitem__(self, i: int | slice) -> ImageFacts | None | list[ImageFacts | None]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not self.present[i]:
            return None
        return ImageFacts(
            path=self.paths[i],
            sha256=self.sha256[i].hex(),
            mode=self.names[self.mode[i]],
            file_format=self.names[self.file_format[i]],
            **{name: column[i].item() for name, column in self.numbers.items()},
        )

    def take(self, rows: np.ndarray, paths: list[Path]) -> FactsColumns:
        """The facts of `rows`, for their `paths` (numpy copies; a few bytes a row)."""
        part = FactsColumns.__new__(FactsColumns)
        part.paths, part.names = paths, self.names
        part.present, part.sha256 = self.present[rows], self.sha256[rows]
        part.numbers = {name: column[rows] for name, column in self.numbers.items()}
        part.mode, part.file_format = self.mode[rows], self.file_format[rows]
        return part


@dataclass
class Records:
    """records.jsonl as arrays; `paths` are root / the recorded relative path."""

    paths: list[Path]
    labels: list[str]
    splits: list[str | None]
    shard: np.ndarray  # int32
    offset: np.ndarray  # int64
    size: np.ndarray  # int32
    crc: np.ndarray  # uint32
    facts: FactsColumns


def read_records(root: Path, n: int) -> Records:
    """The `n` records of the set at `root`; ImgrecError when the file is damaged or short."""
    paths: list[Path] = []
    labels: list[str] = []
    splits: list[str | None] = []
    table = np.zeros((n, 4), dtype=np.int64)
    facts = FactsColumns(paths, n)
    try:
        with open(root / RECORDS_FILE, encoding="utf-8") as f:
            for i, line in enumerate(f):
                r = json.loads(line)
                table[i] = (r["shard"], r["offset"], r["size"], r["crc32"])
                paths.append(root / r["path"])
                labels.append(sys.intern(r["label"]))
                splits.append(None if r["split"] is None else sys.intern(r["split"]))
                if r.get("facts"):
                    facts.set(i, r["facts"])
        if len(paths) != n:
            raise ValueError(f"{len(paths)} records where the index says {n}")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ImgrecError(
            f"The shard records {root / RECORDS_FILE} are damaged ({exc}); {_AGAIN}."
        ) from None
    shard, offset, size, crc = table.T
    return Records(
        paths,
        labels,
        splits,
        shard.astype(np.int32),
        offset.copy(),
        size.astype(np.int32),
        crc.astype(np.uint32),
        facts,
    )
