"""An on-disk cache of image embeddings, keyed by model and by the hash of the file's bytes.

Embedding a photo with a frozen backbone costs ~10 ms of CPU; looking it up costs microseconds.
Keying by the SHA-256 of the file (not its path) means a copy of the same photo in another
folder, a renamed file or a second dataset that shares images reuses the vector, and an edited
file never gets a stale one. Keying by `model_key` (see `imgrec.infer.embed.embedding_key`)
means any change of backbone, weights or preprocessing starts afresh.

The store is SQLite: one file, atomic transactions, WAL so a reader never blocks a writer and
two processes (an audit and a training run) can share it. It is only ever a cache: if the file
is damaged, locked for too long, on a read-only disk or otherwise unusable, a warning is logged
and the store behaves as an empty one that keeps nothing, so a run is never lost to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

log = logging.getLogger(__name__)

STORE_FILE = "embeddings.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # how long to wait for another process's write before giving up on this one
# SQLite before 3.32 allowed only 999 host parameters per statement; stay well below it.
QUERY_CHUNK = 500
_HASH_CHUNK = 1 << 20
_DTYPE = np.dtype("<f4")  # little-endian float32, whatever the machine

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, sha256)
) WITHOUT ROWID
"""


def default_cache_dir() -> Path:
    """Where imgrec keeps caches: $IMGREC_CACHE_DIR, else $XDG_CACHE_HOME/imgrec, else
    ~/.cache/imgrec (tests and CI point IMGREC_CACHE_DIR at a temporary folder)."""
    explicit = os.environ.get("IMGREC_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "imgrec"
    return Path.home() / ".cache" / "imgrec"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MB chunks so memory stays flat for any size.

    Raises OSError when the file cannot be read; callers treat that file as uncacheable.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class EmbeddingStore:
    """Embeddings keyed by (model key, sha256 of the file bytes), so any copy of a file anywhere
    reuses them.

    Not thread-safe (one connection); open one store per thread or process. Every method
    degrades to "nothing cached" on a database problem instead of raising.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / STORE_FILE
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._connect_when_free()
        except (sqlite3.Error, OSError) as exc:
            self._give_up("cannot be opened", exc)

    @property
    def available(self) -> bool:
        """False once the store has given up (damaged, unwritable...): it then caches nothing."""
        return self._conn is not None

    def get_many(self, model_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored float32 vectors among `hashes` (missing ones are simply absent)."""
        found: dict[str, np.ndarray] = {}
        if self._conn is None or not hashes:
            return found
        try:
            for chunk in _chunks(list(dict.fromkeys(hashes)), QUERY_CHUNK):
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT sha256, dim, vector FROM embeddings "
                    f"WHERE model_key = ? AND sha256 IN ({marks})",
                    (model_key, *chunk),
                )
                for sha, dim, blob in rows:
                    vector = _decode(blob, dim)
                    if vector is None:
                        log.warning(
                            "ignoring a damaged cached embedding (%s) in %s", sha, self.path
                        )
                    else:
                        found[sha] = vector
        except sqlite3.Error as exc:
            self._give_up("cannot be read", exc)
            return {}
        return found

    def put_many(self, model_key: str, items: Mapping[str, np.ndarray]) -> None:
        """Store (or replace) vectors in one transaction; non-finite vectors are not stored."""
        if self._conn is None or not items:
            return
        rows = [(model_key, sha, *_encode(v)) for sha, v in items.items() if _storable(v)]
        if not rows:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO embeddings (model_key, sha256, dim, vector) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):  # another process held the lock past the timeout: skip this batch
                log.warning(
                    "embedding cache %s is busy; %d vectors not cached", self.path, len(rows)
                )
                return
            self._give_up("cannot be written", exc)
        except sqlite3.Error as exc:
            self._give_up("cannot be written", exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.available else "unavailable"
        return f"EmbeddingStore({str(self.path)!r}, {state})"

    # ---- internals ----------------------------------------------------------------------------
    def _connect_when_free(self) -> sqlite3.Connection:
        """`_connect`, tried again while another process is creating the same new file: SQLite
        answers "database is locked" at once, without its busy timeout, to a second process
        switching a brand-new file to WAL."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return self._connect()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        """Open, switch to WAL and create the table; any failure here disables the store."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per put_many.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable enough for a cache
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(
                    f"schema version {version}, this imgrec understands {SCHEMA_VERSION}"
                )
            conn.execute(_SCHEMA)
            if version == 0:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _give_up(self, what: str, exc: BaseException) -> None:
        log.warning(
            "embedding cache %s %s (%s); continuing without it. Delete the file to rebuild it.",
            self.path,
            what,
            exc,
        )
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None


def _encode(vector: np.ndarray) -> tuple[int, bytes]:
    v = np.asarray(vector)
    if v.ndim != 1:
        raise ValueError(f"an embedding must be a 1-D vector, got shape {v.shape}")
    return int(v.shape[0]), v.astype(_DTYPE, copy=False).tobytes()


def _decode(blob: bytes, dim: int) -> np.ndarray | None:
    """The stored vector, or None when the blob's size does not match its dimension."""
    if not isinstance(blob, bytes) or dim <= 0 or len(blob) != dim * _DTYPE.itemsize:
        return None
    return np.frombuffer(blob, dtype=_DTYPE).astype(np.float32)  # a native, writable copy


def _storable(vector: np.ndarray) -> bool:
    """NaN rows mark unreadable files; caching them would hide a later fix of the file."""
    v = np.asarray(vector)
    return v.size > 0 and bool(np.isfinite(v).all())


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
