"""Reading disk shards (data/shards.py writes them): an opened set, and the training cache over it.

`ShardSet.open` reads the index and records.jsonl of a local folder, or of any fsspec URL
(s3://..., memory://...), whose shards are then fetched whole into a local cache folder on
first use and read like local ones. Per-record data sits in numpy arrays (about 100 bytes a
record plus its Path, data/shard_records.py). A missing or truncated shard costs its own
records, reported as skipped, not the run.

`ShardCache` is a drop-in for data/cache.DecodedCache that holds no pixels: `cache[i]` reads
the record's JPEG with one `os.pread` and decodes it exactly as DecodedCache decodes a file.
File descriptors are opened lazily per process (DataLoader workers fork), never shared.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from imgrec.data.cache import rows_of
from imgrec.data.dataset import Dataset, Sample, Skipped
from imgrec.data.decode import UnreadableImage, open_image
from imgrec.data.embedding_store import default_cache_dir
from imgrec.data.preprocess import Preprocessing
from imgrec.data.remote import url_text
from imgrec.data.shard_files import (
    ShardFiles,
    fetch,
    is_shard_folder,
    is_url,
    listing,
    looks_unfinished,
    read_remote,
)
from imgrec.data.shard_records import FactsColumns, read_records
from imgrec.data.shard_tar import FORMAT, RECORDS_FILE, SHARD_INDEX, VERSION
from imgrec.data.transforms import eval_transform, resize_for_cache
from imgrec.errors import ImgrecError
from imgrec.text import shown

__all__ = ["ShardCache", "ShardSet", "is_shard_folder", "looks_unfinished"]

_AGAIN = "write the shards again"
BatchOf = tuple[torch.Tensor, list[int], list[Skipped]]  # batch, readable indices, skipped


class ShardSet:
    """An opened, complete shards folder: `dataset()` lists it, `cache()` reads its images."""

    def __init__(self, location: str, folder: Path, index: dict[str, Any], url: str | None):
        self.location = location
        self.root = folder  # local: the folder itself; remote: its local cache folder
        self.manifest = index
        self.image_size = int(index["image_size"])
        self.classes = list(index["classes"])
        shards = index["shards"]
        self.files = ShardFiles(
            folder, [s["file"] for s in shards], [int(s["bytes"]) for s in shards], url
        )
        self.records = read_records(folder, int(index["images"]))
        self.damaged: dict[int, str] = {}

    @classmethod
    def open(cls, location: str | Path) -> ShardSet:
        """Open a shards folder or URL; ImgrecError with what to do when it is not one."""
        if is_url(location):
            return _open_remote(url_text(location))
        folder = Path(os.path.abspath(Path(location).expanduser()))
        index = _checked_index(_read_json(folder / SHARD_INDEX, str(location)), str(location))
        shard_set = cls(str(location), folder, index, None)
        shard_set._check_sizes(listing(folder))
        return shard_set

    def _check_sizes(self, sizes: dict[str, int]) -> None:
        """Mark each shard whose file is missing or not the size written as damaged."""
        for k, (name, expected) in enumerate(zip(self.files.names, self.files.sizes, strict=True)):
            actual = sizes.get(name)
            if actual is None:
                self.damaged[k] = f"shard {name} is missing; {_AGAIN}"
            elif actual < expected:
                self.damaged[k] = (
                    f"shard {name} is truncated ({actual:,} of {expected:,} bytes); {_AGAIN}"
                )
            elif actual > expected:
                self.damaged[k] = (
                    f"shard {name} has changed since it was written ({actual:,} bytes, not "
                    f"{expected:,}); {_AGAIN}"
                )
        if self.damaged and len(self.damaged) == len(self.files.names):
            raise ImgrecError(
                f"No shard in {shown(self.location)} can be read "
                f"({next(iter(self.damaged.values()))})."
            )

    def dataset(self) -> Dataset:
        """The set as an imgrec Dataset: sample paths are root / recorded path; the files the
        writer skipped and the records of damaged shards are its skipped files."""
        r, root = self.records, self.root
        good = [i for i, k in enumerate(r.shard.tolist()) if k not in self.damaged]
        samples = [Sample(r.paths[i], r.labels[i], r.splits[i]) for i in good]
        skipped = [Skipped(root / s["path"], s["reason"]) for s in self.manifest["skipped"]]
        skipped += [
            Skipped(r.paths[i], self.damaged[k])
            for i, k in enumerate(r.shard.tolist())
            if k in self.damaged
        ]
        # the originals' SHA-256, recorded with the facts: the dataset's fingerprint then
        # names the same files as when they were read from the folder, without them here
        known = {r.paths[i]: r.facts.sha256[i].hex() for i in good if r.facts.present[i]}
        return Dataset(root, samples, self.classes, skipped, known)

    @functools.cached_property
    def _rows_by_path(self) -> dict[Path, int]:
        return {p: i for i, p in enumerate(self.records.paths)}

    def batch_decoder(self) -> Callable[[Sequence[Path], Preprocessing], BatchOf]:
        """A function (paths, preprocessing) -> (eval-transformed batch, indices of the
        readable ones, skipped) over these shards: what the audit's embeddings and the
        evaluation decode files into, read from the records instead."""

        def decode(paths: Sequence[Path], p: Preprocessing) -> BatchOf:
            cache = self.cache(p, list(paths), verify=False)
            transform = eval_transform(p)
            images, ok, skipped = [], [], []
            for i, path in enumerate(cache.paths):
                try:
                    images.append(transform(cache[i]))
                    ok.append(i)
                except (UnreadableImage, KeyError) as exc:
                    skipped.append(Skipped(path, str(exc)))
            size = p.input_size
            batch = torch.stack(images) if images else torch.empty(0, 3, size, size)
            return batch, ok, skipped

        return decode

    def cache(
        self,
        preprocessing: Preprocessing,
        paths: Sequence[Path] | None = None,
        verify: bool = True,
        progress: bool = False,
    ) -> ShardCache:
        """A ShardCache over `paths` (default: every readable record, in dataset order)."""
        if preprocessing.resize_size > self.image_size:
            raise ImgrecError(
                f"These shards hold images with a {self.image_size} px short side; the model "
                f"needs {preprocessing.resize_size}: write them again with `imgrec shards ... "
                f"--image-size {preprocessing.resize_size}`."
            )
        paths = self.dataset().paths if paths is None else [Path(p) for p in paths]
        where = self._rows_by_path
        try:
            rows = np.array([where[p] for p in paths], dtype=np.int64)
        except KeyError as err:
            raise ValueError(f"{err.args[0]} is not in the shards at {self.location}") from None
        return ShardCache(list(paths), preprocessing, self, rows, verify, progress)


def _no_index(location: str | Path) -> ImgrecError:
    """What to say about a location without an index: unfinished, or no shards at all."""
    if looks_unfinished(location):
        return ImgrecError(
            f"{shown(location)} holds shards but no {SHARD_INDEX}: their writing was "
            "interrupted; re-run `imgrec shards` to finish writing."
        )
    return ImgrecError(
        f"{shown(location)} is not a shards folder (it has no {SHARD_INDEX}); write one "
        "with `imgrec shards DATA --out FOLDER`."
    )


def _read_json(path: Path, location: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _no_index(location) from None
    except (OSError, ValueError) as exc:
        raise ImgrecError(f"Cannot read {shown(path)} ({exc}); {_AGAIN}.") from None
    return value if isinstance(value, dict) else {}


def _checked_index(index: dict[str, Any], location: str) -> dict[str, Any]:
    if index.get("format") != FORMAT:
        raise ImgrecError(f"{shown(location)}/{SHARD_INDEX} is not an imgrec shard index.")
    if index.get("version") != VERSION:
        raise ImgrecError(
            f"The shards in {shown(location)} have format version {index.get('version')}; "
            f"this imgrec reads version {VERSION}: upgrade imgrec or {_AGAIN}."
        )
    missing = {"image_size", "classes", "images", "shards", "skipped"} - set(index)
    if missing:
        raise ImgrecError(f"The shard index of {shown(location)} is incomplete; {_AGAIN}.")
    return index


def _open_remote(url: str) -> ShardSet:
    """A remote set: index and records copied into a local cache folder (emptied when the
    remote index changed), shards fetched there on first use."""
    url = url_text(url).rstrip("/")
    sizes = listing(url)
    if SHARD_INDEX not in sizes:
        raise _no_index(url)
    folder = default_cache_dir() / "shards" / hashlib.sha256(url.encode()).hexdigest()[:16]
    remote_index = read_remote(f"{url}/{SHARD_INDEX}")
    local_index = folder / SHARD_INDEX
    if not local_index.exists() or local_index.read_bytes() != remote_index:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        fetch(f"{url}/{RECORDS_FILE}", folder / RECORDS_FILE)
        local_index.write_bytes(remote_index)
    index = _checked_index(_read_json(local_index, url), url)
    shard_set = ShardSet(url, folder, index, url)
    shard_set._check_sizes(sizes)
    return shard_set


class ShardCache:
    """Drop-in for data/cache.DecodedCache over shard records: same attributes and methods,
    no pixels held (`nbytes` is 0); each access decodes one JPEG read with one pread."""

    def __init__(
        self,
        paths: list[Path],
        preprocessing: Preprocessing,
        shard_set: ShardSet,
        rows: np.ndarray,
        verify: bool = True,
        progress: bool = False,
    ) -> None:
        self.paths = paths
        self.preprocessing = preprocessing
        self.verify = verify
        self.progress = progress
        self.valid_indices: list[int] = []
        self.skipped: list[Skipped] = []
        r = shard_set.records
        # the audit's facts of each image: built from columns on access, as a list would give
        self.facts: FactsColumns = r.facts.take(rows, paths)
        self._files = shard_set.files
        self._damaged = shard_set.damaged
        self._shard, self._offset = r.shard[rows], r.offset[rows]
        self._size, self._crc = r.size[rows], r.crc[rows]
        self._usable = np.zeros(len(paths), dtype=bool)
        self._built = False

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def nbytes(self) -> int:
        """Memory held by cached pixels: none, every access decodes from the shards."""
        return 0

    def __getitem__(self, i: int) -> torch.Tensor:
        if not self._built:
            self.build()
        if not self._usable[i]:
            raise KeyError(f"image {i} ({self.paths[i]}) could not be decoded")
        p = self.preprocessing
        try:
            data = self._bytes(i)
            if zlib.crc32(data) != int(self._crc[i]):
                raise UnreadableImage(self._mismatch(i))
            return resize_for_cache(open_image(data, draft=p.resize_size), p)
        except (UnreadableImage, OSError) as exc:
            raise UnreadableImage(f"{self.paths[i]}: {exc}") from exc

    def relabelled(self, paths: list[Path]) -> ShardCache:
        """This cache under other names, one per record in order: shards written of a local
        folder read back under the original files' paths (data/sources.py)."""
        if len(paths) != len(self.paths):
            raise ValueError(f"got {len(paths)} paths for {len(self.paths)} records")
        rename = dict(zip(self.paths, paths, strict=True))
        part = object.__new__(ShardCache)
        part.__dict__.update(self.__dict__)
        part.paths = list(paths)
        part.facts = self.facts.take(np.arange(len(paths)), part.paths)
        part.skipped = [Skipped(rename.get(s.path, s.path), s.reason) for s in self.skipped]
        return part

    def _bytes(self, i: int) -> bytes:
        return self._files.read(int(self._shard[i]), int(self._offset[i]), int(self._size[i]))

    def _mismatch(self, i: int) -> str:
        name = self._files.names[int(self._shard[i])]
        return f"damaged in {name} (its checksum differs); {_AGAIN}"

    def build(self) -> list[Skipped]:
        """Check every record once (damaged shards; with `verify`, each record's CRC-32 in one
        sequential pass); return the ones that cannot be used, with reasons."""
        if self._built:
            return list(self.skipped)
        failed: dict[int, str] = {}
        for i, k in enumerate(self._shard.tolist()):
            if k in self._damaged:
                failed[i] = self._damaged[k]
        if self.verify:
            failed.update(self._verify([i for i in range(len(self.paths)) if i not in failed]))
        self.skipped = [Skipped(self.paths[i], failed[i]) for i in sorted(failed)]
        self.valid_indices = [i for i in range(len(self.paths)) if i not in failed]
        self._usable[self.valid_indices] = True
        if self.paths and not self.valid_indices:
            raise ImgrecError(
                f"None of the {len(self.paths)} images in the shards can be read "
                f"({self.skipped[0].reason})."
            )
        self._built = True
        return list(self.skipped)

    def _verify(self, rows: list[int]) -> dict[int, str]:
        """CRC-32 of every record's bytes, read in file order (shard, then offset)."""
        failed: dict[int, str] = {}
        order = sorted(rows, key=lambda i: (int(self._shard[i]), int(self._offset[i])))
        with Progress(transient=True, disable=not self.progress) as bar:
            task = bar.add_task("Checking shards", total=len(order))
            for i in order:
                bar.advance(task)
                try:
                    data = self._bytes(i)
                except OSError as exc:
                    failed[i] = f"cannot read {self._files.names[int(self._shard[i])]}: {exc}"
                    continue
                if zlib.crc32(data) != int(self._crc[i]):
                    failed[i] = self._mismatch(i)
        return failed

    def subset(self, paths: list[Path]) -> ShardCache:
        """A built cache over some of these paths, sharing the shard files."""
        self.build()
        rows = rows_of(self.paths, paths)
        part = object.__new__(ShardCache)
        part.__dict__.update(self.__dict__)
        part.paths = [self.paths[i] for i in rows]
        part.facts = self.facts.take(np.asarray(rows, dtype=np.int64), part.paths)
        part._shard, part._offset = self._shard[rows], self._offset[rows]
        part._size, part._crc = self._size[rows], self._crc[rows]
        part._usable = self._usable[rows]
        part.valid_indices = np.flatnonzero(part._usable).tolist()
        chosen = set(part.paths)
        part.skipped = [s for s in self.skipped if s.path in chosen]
        return part
