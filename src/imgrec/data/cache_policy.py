"""Where training keeps its images: decoded in RAM, or streamed from disk shards.

Decoded pixels are fastest to train from and cost about 200 KB per image at a 256 px short
side, so 100,000 photos fill 24 GB. Shards keep the resized JPEG (15-30 KB) on disk and
decode a batch at a time: memory stays flat with the number of images. `--cache auto`
takes RAM while the decoded images fit a memory budget, shards beyond it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psutil

from imgrec.errors import ImgrecError

CACHE_MODES = ("auto", "ram", "disk")
# Shards' default short side: the resize size of the default model (efficientnet_lite0 at
# 256 px input, cropped from 292), so shards written with defaults train the default model.
DEFAULT_SHARD_SIZE = 292
BUDGET_SHARE = 0.5  # of the memory available now: the model, its gradients and the OS need the rest
ASPECT = 4 / 3  # a photo's long side over its short side, on average: the cache keeps both
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9}
_UNITS |= {"t": 1e12, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes in '8GB', '200MB', '1.5g' or '512MiB' (decimal units unless they say 'iB')."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ImgrecError(f"'{text}' is not a size; write it like 8GB, 500MB or 2GiB.")
    return int(float(match.group(1)) * _UNITS[unit])


def decoded_bytes(images: int, resize_size: int) -> int:
    """What `images` decoded at a `resize_size` short side take in RAM (uint8 RGB)."""
    return int(images * resize_size * resize_size * ASPECT * 3)


def memory_budget(explicit: int | None = None) -> int:
    """The RAM the decoded images may take: `explicit`, else half of what is available."""
    if explicit is not None:
        return explicit
    return int(psutil.virtual_memory().available * BUDGET_SHARE)


@dataclass(frozen=True)
class CacheChoice:
    mode: str  # "ram" or "disk"
    reason: str | None  # one line for the user when `auto` chose disk


def choose_cache(mode: str, images: int, resize_size: int, budget: int | None) -> CacheChoice:
    """RAM or disk for `images` at `resize_size`, as asked (`ram`, `disk`) or by the budget."""
    if mode not in CACHE_MODES:
        raise ImgrecError(f"--cache must be one of {', '.join(CACHE_MODES)}, got '{mode}'.")
    if mode != "auto":
        return CacheChoice(mode, None)
    need, allowed = decoded_bytes(images, resize_size), memory_budget(budget)
    if need <= allowed:
        return CacheChoice("ram", None)
    return CacheChoice(
        "disk",
        f"{images:,} images take about {_gb(need)} decoded, over the memory budget of "
        f"{_gb(allowed)} (--cache-memory): streaming them from disk shards instead.",
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"
