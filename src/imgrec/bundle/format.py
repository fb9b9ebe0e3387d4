"""The model file, model.imgrec: one safetensors file, weights plus JSON metadata.

safetensors holds only tensors and strings, so opening a model file can never run code
(unlike a pickled checkpoint). Everything needed to use the model (classes, preprocessing,
architecture) lives in the metadata, so the file is self-contained.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from imgrec.errors import ImgrecError

if TYPE_CHECKING:  # torch loads only to read or write tensors: `imgrec info` reads the header
    import torch

FORMAT = "imgrec-model"
FORMAT_VERSION = 1
# Limits on the JSON header, checked before it is parsed: a real one is ~40 KB, 30 deep at most
# nowhere near these; beyond them json.loads would recurse until it crashes (deep nesting) or
# build gigabytes of small objects (a header of millions of empty lists).
_MAX_HEADER = 16 << 20
_MAX_DEPTH = 32
_MAX_CONTAINERS = 200_000
_MAX_VALUES = 2_000_000
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")


class BundleError(ImgrecError):
    """A model file that is missing, damaged, foreign or too new."""


def save_bundle(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write tensors and metadata atomically: a crash mid-save leaves the old file intact."""
    from safetensors.torch import save as save_safetensors

    path = Path(path)
    tensors = _cpu_tensors(state_dict)
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    header["imgrec"] = json.dumps(metadata)
    data = save_safetensors(tensors, metadata=header)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a model file is shareable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cpu_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}


def weights_sha256(path: Path) -> str:
    """SHA-256 of a model file's tensor data (everything after the safetensors header):
    stable when only the metadata (such as an embedded model card) changes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + length)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensor_data_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """What weights_sha256 will read from the file save_bundle writes of `state_dict`, known
    before the file exists: safetensors' data section does not depend on the metadata."""
    from safetensors.torch import save as save_safetensors

    data = memoryview(save_safetensors(_cpu_tensors(state_dict)))
    (length,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + length :]).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _not_ours(path: Path, why: str) -> BundleError:
    return BundleError(f"{path} is not an imgrec model file ({why}).")


def check_model_path(path: Path) -> None:
    """BundleError unless a file is at `path`. The CLI calls it while it reads its
    arguments, so a mistyped model path is said at once, not after seconds of imports."""
    if not path.exists():
        raise BundleError(f"no model file at {path}.")
    if path.is_dir():
        raise BundleError(f"{path} is a folder; pass the path of a model file (model.imgrec).")


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and sanity-check the safetensors header, reading no tensor data."""
    check_model_path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise _not_ours(path, "too short")
            (length,) = struct.unpack("<Q", prefix)
            if length > size - 8:
                raise _not_ours(path, "no safetensors header")
            if length > _MAX_HEADER:
                raise _not_ours(path, f"a header over {_MAX_HEADER >> 20} MB")
            raw = f.read(length)
    except OSError as err:
        raise BundleError(f"could not read {path} ({err.strerror or err}).") from err
    header = _parse_json(path, raw, "no safetensors header")
    if not isinstance(header, dict):
        raise _not_ours(path, "no safetensors header")
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (TypeError, KeyError, IndexError, ValueError, OverflowError):
        raise _not_ours(path, "damaged header") from None
    if 8 + length + max(ends, default=0) != size:
        raise _not_ours(path, "damaged or truncated")
    return header


def _parse_json(path: Path, raw: bytes | str, why: str) -> Any:
    """json.loads, once the text's size and shape are known to be safe to parse."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > _MAX_HEADER:
        raise _not_ours(path, f"a header over {_MAX_HEADER >> 20} MB")
    bare = _STRING.sub(b'""', data)  # brackets, commas and colons inside strings do not count
    brackets = _NOT_BRACKET.sub(b"", bare)
    if len(brackets) > 2 * _MAX_CONTAINERS or bare.count(b",") + bare.count(b":") > _MAX_VALUES:
        raise _not_ours(path, "a header of too many values")
    steps = (1 if b in b"[{" else -1 for b in brackets)
    if max(accumulate(steps), default=0) > _MAX_DEPTH:
        raise _not_ours(path, f"a header nested over {_MAX_DEPTH} levels deep")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, a 5000-digit number
        raise _not_ours(path, why) from None


def _metadata(path: Path, header: dict[str, Any]) -> dict:
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{path} is a safetensors file but not an imgrec model.")
    try:
        version = int(meta.get("format_version", ""))
        text = meta["imgrec"]
    except (ValueError, KeyError, TypeError, OverflowError):
        raise _not_ours(path, "damaged metadata") from None
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{path} was written by a newer imgrec (format {version}); upgrade imgrec."
        )
    if not isinstance(text, str):
        raise _not_ours(path, "damaged metadata")
    info = _parse_json(path, text, "damaged metadata")
    if not isinstance(info, dict):
        raise _not_ours(path, "damaged metadata")
    _validate(path, info)
    return info


def _validate(path: Path, info: dict) -> None:
    from imgrec.bundle.metadata import InvalidMetadata, validate_metadata

    try:
        validate_metadata(info)
    except InvalidMetadata as exc:
        raise BundleError(f"{path} has invalid metadata: {exc}.") from None


def read_metadata(path: Path) -> dict:
    """The metadata alone, from the header (fast: tensors are never read)."""
    path = Path(path)
    return _metadata(path, _read_header(path))


def load_bundle(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a model file; raises BundleError with one clear sentence."""
    from safetensors.torch import load as load_safetensors

    path = Path(path)
    metadata = _metadata(path, _read_header(path))
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BundleError(f"could not read {path} ({err.strerror or err}).") from err
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise _not_ours(path, str(err).splitlines()[0] if str(err) else "damaged") from err
    return tensors, metadata
