"""One disk shard: images into a WebDataset-style tar plus its sidecar, and the folder's names.

A shard task runs in a worker process (data/shards.py starts them): it reads each image with
the caller's `read`, decodes it once (gathering the audit's facts on the same decode), keeps
a JPEG of modest size as it came or shrinks the image as the training cache would and
re-encodes it, and appends `<key>.jpg` and `<key>.json`. The tar is written as `.tar.part`
and renamed when complete, after its sidecar (inputs, settings and records), so a `.tar`
with a matching sidecar is always whole.
Members have fixed owner, mode and time: the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image

from imgrec.data.decode import UnreadableImage, _open_source, open_image
from imgrec.data.facts import THUMB_SIZE, decode_with_facts, facts_to_dict
from imgrec.data.preprocess import crop_extreme_aspect, short_side_size

SHARD_INDEX = "imgrec-shards.json"
RECORDS_FILE = "records.jsonl"
FORMAT = "imgrec-shards"
VERSION = 1
# What a shards folder may hold: the index, the records, shards, their sidecars, unfinished
# shards (.part) and temporary files (.tmp-PID) of an interrupted run.
OURS = re.compile(
    r"(shard-(\d{6,})\.(?:tar|tar\.part|json)|records\.jsonl|imgrec-shards\.json)(\.tmp-\d+)?"
)
_TAR_BLOCK = 512


def shard_name(shard: int) -> str:
    """`shard-000003.tar` for shard 3."""
    return f"shard-{shard:06d}.tar"


def sidecar_name(shard: int) -> str:
    """`shard-000003.json`: the records of shard 3, kept so a later run can reuse it."""
    return f"shard-{shard:06d}.json"


@dataclass(frozen=True)
class ShardInput:
    """One image to write: `source` is what `read` gets (a local path or a URL such as
    s3://bucket/cats/1.jpg), `path` the relative name the shards record ("cats/1.jpg")."""

    source: str
    path: str
    label: str
    split: str | None = None


@dataclass(frozen=True)
class ShardSettings:
    image_size: int
    quality: int
    with_facts: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "quality": self.quality,
            "with_facts": self.with_facts,
            "version": VERSION,
        }


@dataclass(frozen=True)
class ShardTask:
    """Shard number `shard` of folder `out`: these inputs, these settings, read with `read`."""

    shard: int
    out: Path
    inputs: list[ShardInput]
    settings: ShardSettings
    read: Callable[[str], bytes]

    def inputs_list(self) -> list[list[str | None]]:
        return [[i.path, i.label, i.split] for i in self.inputs]


@dataclass(frozen=True)
class ShardDone:
    """A finished shard, as the index lists it; records stay in the sidecar."""

    shard: int
    images: int
    bytes: int
    skipped: list[list[str]]  # [path, reason]


def read_local(source: str) -> bytes:
    """The bytes of a local file; UnreadableImage (a reason) for what is not a readable file."""
    with _open_source(Path(source)) as fp:
        return fp.read()


def finished_shard(task: ShardTask) -> ShardDone | None:
    """What an earlier run wrote for this shard, when its tar, sidecar, inputs and settings
    all match this task's; None means write it (again)."""
    try:
        side = read_sidecar(task.out, task.shard)
        same = (
            side["settings"] == task.settings.as_dict()
            and side["inputs"] == task.inputs_list()
            and (task.out / shard_name(task.shard)).stat().st_size == side["bytes"]
        )
        done = ShardDone(task.shard, len(side["records"]), side["bytes"], side["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return done if same else None


def read_sidecar(out: Path, shard: int) -> dict[str, Any]:
    return json.loads((out / sidecar_name(shard)).read_text(encoding="utf-8"))


def write_shard(task: ShardTask, advance: Callable[[], None] = lambda: None) -> ShardDone:
    """Write one shard as .tar.part, then its sidecar, then rename it to .tar. A file `read`
    or decoding refuses (UnreadableImage, OSError) is skipped with its reason."""
    part = task.out / f"{shard_name(task.shard)}.part"
    records: list[dict[str, Any]] = []
    skipped: list[list[str]] = []
    with open(part, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for j, item in enumerate(task.inputs):
                try:
                    records.append(_add_record(tar, task, j, item))
                except (UnreadableImage, OSError) as exc:
                    skipped.append([item.path, _skip_reason(exc)])
                advance()
        f.flush()
        os.fsync(f.fileno())
    size = part.stat().st_size
    sidecar = {
        "settings": task.settings.as_dict(),
        "inputs": task.inputs_list(),
        "bytes": size,
        "skipped": skipped,
        "records": records,
    }
    write_json_atomic(task.out / sidecar_name(task.shard), sidecar)
    os.replace(part, task.out / shard_name(task.shard))
    return ShardDone(task.shard, len(records), size, skipped)


def _skip_reason(exc: Exception) -> str:
    if isinstance(exc, UnreadableImage):
        return str(exc)
    return f"cannot read file: {getattr(exc, 'strerror', None) or exc}"


def _add_record(tar: tarfile.TarFile, task: ShardTask, j: int, item: ShardInput) -> dict[str, Any]:
    """Decode one image (its facts on the way), keep it or shrink and re-encode it, append
    its two members; its record.

    A JPEG kept as it came needs no pixels at the shard's size, only a decode good enough
    for the audit's facts and for knowing it decodes: at THUMB_SIZE, as `imgrec audit`
    scans a folder (the same facts), JPEG's DCT scaling makes that 1/4 or 1/8 of the work.
    The rest are decoded at the shard's size, shrunk and re-encoded."""
    size, settings = task.settings.image_size, task.settings
    data = task.read(item.source)
    kept = _kept_size(data, size)
    draft = THUMB_SIZE if kept is not None else size
    if settings.with_facts:
        image, facts = decode_with_facts(Path(item.path), draft, data)
    else:
        image, facts = open_image(data, draft=draft), None
    jpeg, image_size = (data, kept) if kept is not None else _shrunk_jpeg(image, size, settings)
    key = f"{task.shard:06d}-{j:06d}"
    offset = _add_member(tar, f"{key}.jpg", jpeg)
    meta = {"path": item.path, "label": item.label, "split": item.split}
    _add_member(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    return {
        **meta,
        "shard": task.shard,
        "key": key,
        "offset": offset,
        "size": len(jpeg),
        "crc32": zlib.crc32(jpeg),
        "width": image_size[0],
        "height": image_size[1],
        "facts": facts_to_dict(facts) if facts is not None else None,
    }


# A JPEG whose short side is at most this many times the shard size is stored as it came:
# training decodes it at a reduced DCT scale anyway, so it reads the same pixels a folder
# would give, where shrinking and re-encoding would cost a second compression, the writer's
# time (the encode is as slow as the decode) and often bytes (a quality-90 copy of a modest
# photo is larger than the photo).
KEEP_ORIGINAL_UP_TO = 2.0
_ORIENTATION = 0x0112  # the EXIF tag
_QUARTER_TURNS = {5, 6, 7, 8}  # orientations shown with width and height swapped


def _kept_size(data: bytes, size: int) -> tuple[int, int] | None:
    """The (width, height), as shown, of a JPEG the shard stores as it came; None for an
    image to shrink and re-encode (or one whose header does not parse: decoding says why)."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
            if header.getexif().get(_ORIENTATION) in _QUARTER_TURNS:
                width, height = height, width  # as it is shown, like a shrunk copy's size
    except Exception:  # the decode that follows gives the reason
        return None
    return (width, height) if min(width, height) <= KEEP_ORIGINAL_UP_TO * size else None


def _shrunk_jpeg(
    image: Image.Image, size: int, settings: ShardSettings
) -> tuple[bytes, tuple[int, int]]:
    """The shard's copy of an image too large to keep: shrunk, then JPEG at the quality."""
    image = shrunk(image, size)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=settings.quality)
    return buf.getvalue(), image.size


def shrunk(image: Image.Image, size: int) -> Image.Image:
    """Short side -> `size` as the training cache resizes (never enlarged), after the cache's
    aspect cap, so no stored image is longer than a JPEG may be."""
    image = crop_extreme_aspect(image)
    if min(image.size) <= size:
        return image
    return image.resize(short_side_size(*image.size, size), Image.Resampling.BILINEAR)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one file with fixed owner, mode and time; the byte offset of its data in the
    tar (what TarInfo.offset_data says when it is read back)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
    return tar.offset - -(-len(data) // _TAR_BLOCK) * _TAR_BLOCK


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A text file written under a temporary name and renamed into place when complete."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as JSON at `path`, never half-written."""
    with atomic_text(path) as f:
        json.dump(value, f, ensure_ascii=False)
