"""Where a shard set's files are: a local folder, or any fsspec URL (s3://..., memory://...)
whose files are fetched whole into a local cache folder on first use.

URLs go through data/remote.py's filesystems (credentials and endpoint from the environment,
short timeouts) and its one-sentence storage errors, as the dataset listing does.

`ShardFiles` reads records with `os.pread` on descriptors it opens lazily in each process and
never hands across a fork or a pickle: DataLoader workers fork (or spawn) from the training
process, and a descriptor shared between processes shares its file position too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imgrec.data.remote import _filesystem_for, is_url, storage_errors, url_text
from imgrec.data.shard_tar import SHARD_INDEX

__all__ = ["ShardFiles", "fetch", "is_shard_folder", "is_url", "listing", "looks_unfinished"]


def listing(location: str | Path) -> dict[str, int]:
    """{file name: size} of what the folder (or URL prefix) holds; empty when it is none."""
    if is_url(location):
        url = url_text(location)
        fs, path = _filesystem_for(url)
        with storage_errors(url):
            try:
                entries = fs.ls(path, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                return {}
        return {_basename(e["name"]): int(e.get("size") or 0) for e in entries}
    folder = Path(location)
    if not folder.is_dir():
        return {}
    return {e.name: e.stat().st_size for e in os.scandir(folder) if e.is_file()}


def _basename(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def is_shard_folder(location: str | Path) -> bool:
    """True when `location` (a folder or URL) holds a complete shard set (its index)."""
    return SHARD_INDEX in listing(location)


def looks_unfinished(location: str | Path) -> bool:
    """Shards but no index: a writing that was interrupted (re-run `imgrec shards`)."""
    names = listing(location)
    return SHARD_INDEX not in names and any(
        n.startswith("shard-") and n.endswith((".tar", ".tar.part")) for n in names
    )


class ShardFiles:
    """The shard files of one set as local files, read with pread on descriptors opened
    lazily in each process; a remote set's shards are fetched whole on first use."""

    def __init__(self, folder: Path, names: list[str], sizes: list[int], url: str | None):
        self.folder, self.names, self.sizes, self.url = folder, names, sizes, url
        self._pid = os.getpid()
        self._fds: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": {}, "_pid": -1}  # descriptors never travel

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._fds.values():
                os.close(fd)

    def read(self, shard: int, offset: int, size: int) -> bytes:
        return os.pread(self._fd(shard), size, offset)

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked child: the parent's descriptors are not ours
            for fd in self._fds.values():
                os.close(fd)
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            fd = os.open(self.local(shard), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            kept = self._fds.setdefault(shard, fd)
            if kept != fd:  # another thread opened it meanwhile
                os.close(fd)
            fd = kept
        return fd

    def local(self, shard: int) -> Path:
        """The shard as a local file, fetched (atomically) when the set is remote."""
        path = self.folder / self.names[shard]
        if self.url is not None and not _has_size(path, self.sizes[shard]):
            fetch(f"{self.url.rstrip('/')}/{self.names[shard]}", path)
        return path


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def fetch(url: str, path: Path) -> None:
    """Copy `url` to the local `path` under a temporary name, renamed when complete, so a
    reader in another process never sees half a file; storage failures are one sentence."""
    fs, remote = _filesystem_for(url)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with storage_errors(url):
            fs.get_file(remote, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_remote(url: str) -> bytes:
    """The bytes of one small remote file (the index); storage failures are one sentence."""
    fs, path = _filesystem_for(url)
    with storage_errors(url):
        return fs.cat_file(path)
