"""What `imgrec train` can read: a folder or CSV, a shards folder, or object storage.

Object storage is always read into shards first (one listing, then every object fetched
once by the shard writer's worker processes, resized and kept compressed): an epoch then
never goes back to the bucket. A local folder becomes shards only when training streams
from disk (`--cache disk`, or `auto` over the memory budget). Shards made here live in
imgrec's cache folder, keyed by what they hold, so the next run on the same data reuses
them, and an interrupted writing continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

from imgrec.data.dataset import Dataset, Skipped, load_dataset
from imgrec.data.embedding_store import default_cache_dir
from imgrec.data.preprocess import Preprocessing
from imgrec.data.remote import is_url, list_remote, read_bytes, url_text
from imgrec.data.shard_files import is_shard_folder
from imgrec.data.shards import ShardInput, inputs_from_dataset, read_local, write_shards

if TYPE_CHECKING:  # the reader loads torch: only what trains or evaluates needs it
    from imgrec.data.shard_reader import ShardCache, ShardSet


def is_streamed(source: str | Path) -> bool:
    """Sources read through shards whatever the cache: object storage and shard folders."""
    return is_url(source) or is_shard_folder(source)


def open_listing(source: str | Path) -> tuple[Dataset, ShardSet | None]:
    """The dataset of a local folder, CSV or shards folder, and its ShardSet if it is one.
    (Object storage has no listing without its shards: see `remote_shards`.)"""
    from imgrec.data.shard_reader import ShardSet

    if is_shard_folder(source):
        shards = ShardSet.open(source)
        return shards.dataset(), shards
    return load_dataset(source), None


class ShardSource(NamedTuple):
    """What a shard writer takes from a source: the images, the source as the index names
    it, the files the listing already left out, and how to read an input's bytes."""

    inputs: list[ShardInput]
    source: str
    skipped: list[Skipped]
    read: Callable[[str], bytes]


def shard_source(source: str | Path) -> ShardSource:
    """The images of a folder, CSV or object-storage prefix, listed as `imgrec train` lists
    them, ready for `write_shards`."""
    if is_url(source):
        url = url_text(source)
        listing = list_remote(url)
        root = listing.root.rstrip("/") + "/"
        skipped = [Skipped(PurePosixPath(u.removeprefix(root)), why) for u, why in listing.skipped]
        return ShardSource(listing.inputs, url, skipped, read_bytes)
    dataset = load_dataset(source)
    skipped = [Skipped(Path(dataset.relative(s.path)), s.reason) for s in dataset.skipped]
    return ShardSource(inputs_from_dataset(dataset), str(dataset.root), skipped, read_local)


def remote_shards(url: str | Path, image_size: int, progress: bool = False) -> ShardSet:
    """Shards of an object-storage dataset at `image_size`, written (or finished) into the
    cache: list the objects, fetch and resize those not yet in a finished shard, open."""
    from imgrec.data.shard_reader import ShardSet

    found = shard_source(url)
    rows = [(i.path, i.label, i.split) for i in found.inputs]
    out = _cache_folder("remote", found.source, image_size, rows)
    write_shards(
        found.inputs,
        out,
        image_size,
        read=found.read,
        source=found.source,
        progress=progress,
        skipped=found.skipped,
    )
    return ShardSet.open(out)


def local_shards(dataset: Dataset, image_size: int, progress: bool = False) -> ShardSet:
    """Shards of a listed local dataset at `image_size`, in the cache (reused while the
    files' names, sizes and times are unchanged)."""
    from imgrec.data.shard_reader import ShardSet

    stats = []
    for sample in dataset.samples:
        st = os.stat(sample.path)
        stats.append(
            (dataset.relative(sample.path), sample.label, sample.split, st.st_size, st.st_mtime_ns)
        )
    out = _cache_folder("local", str(dataset.root.resolve()), image_size, stats)
    write_shards(
        inputs_from_dataset(dataset),
        out,
        image_size,
        source=str(dataset.root),
        progress=progress,
        skipped=dataset.skipped,
    )
    return ShardSet.open(out)


def _cache_folder(kind: str, where: str, image_size: int, rows: list) -> Path:
    """cache/shards/<kind>-<hash of where, size and every file's row>: new data, new folder."""
    digest = hashlib.sha256(json.dumps([where, image_size, rows]).encode()).hexdigest()[:20]
    return default_cache_dir() / "shards" / f"{kind}-{digest}"


def shards_for_dataset(
    shards: ShardSet, dataset: Dataset, preprocessing: Preprocessing, progress: bool = False
) -> ShardCache:
    """A ShardCache over `dataset`'s own file paths, from shards written of it (`local_shards`),
    so that splits, audit and reports keep naming the original files."""
    stored = [shards.root / dataset.relative(path) for path in dataset.paths]
    return shards.cache(preprocessing, stored, progress=progress).relabelled(dataset.paths)


def audit_source(
    source: str | Path,
) -> tuple[Dataset, ShardCache | None, Callable[[list[Path], Preprocessing], tuple] | None]:
    """What the audit (and `imgrec split`) read of `source`: the dataset, and for a shards
    folder the records' facts (no scan of files that are not there) and a reader of its
    images for the embeddings."""
    dataset, shards = open_listing(source)
    if shards is None:
        return dataset, None, None
    size = shards.image_size
    facts = shards.cache(Preprocessing(size, (0.5,) * 3, (0.5,) * 3, size), dataset.paths)
    return dataset, facts, shards.batch_decoder()
