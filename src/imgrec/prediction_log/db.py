"""The prediction log's SQLite file: its fixed schema, opening it safely, and retention.

The schema is a contract: `imgrec serve --log` and `imgrec predict --log` write it and
`imgrec drift` reads it, so columns are only ever added, and a file whose `log_info` says it was
written by a newer schema is refused rather than half understood. Every problem with the file
(missing folder, not SQLite, read-only, a foreign `predictions` table) surfaces here, at start,
as one ImgrecError sentence, never as a failure in the middle of serving.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from imgrec.errors import ImgrecError

SCHEMA_VERSION = 1
COLUMNS = (
    "ts", "model_id", "model_version", "source", "filename", "sha256", "width", "height",
    "brightness", "contrast", "sharpness", "label", "confidence", "top_k", "signature",
    "image_path",
)  # fmt: skip
SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
  id INTEGER PRIMARY KEY,
  ts REAL NOT NULL,
  model_id TEXT NOT NULL,
  model_version TEXT,
  source TEXT NOT NULL,
  filename TEXT,
  sha256 TEXT NOT NULL,
  width INTEGER, height INTEGER,
  brightness REAL, contrast REAL, sharpness REAL,
  label TEXT NOT NULL,
  confidence REAL NOT NULL,
  top_k TEXT NOT NULL,
  signature BLOB,
  image_path TEXT
);
"""
INDEX = "CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts)"
INSERT = (
    f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)


def open_log_db(path: str | Path) -> sqlite3.Connection:
    """A connection to the log at `path` (created if new), checked by a real write.

    WAL journal mode lets `imgrec drift` read while the server writes. The connection is in
    autocommit mode (callers open their own transactions) and may move to another thread.
    """
    path = Path(path)
    if path.is_dir():
        raise ImgrecError(
            f"the prediction log {path} is a folder; give a file such as {path}/predictions.db."
        )
    if not path.parent.is_dir():
        raise ImgrecError(
            f"cannot open the prediction log {path}: the folder {path.parent} does not exist."
        )
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise ImgrecError(f"cannot open the prediction log {path} ({exc}).") from None
    try:
        _prepare(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise ImgrecError(
                f"{path} is not an SQLite database; give --log a new file name or an "
                "existing prediction log."
            ) from None
        raise ImgrecError(f"cannot write the prediction log {path} ({exc}).") from None
    except ImgrecError:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("PRAGMA busy_timeout = 10000")  # a reader (imgrec drift) may hold a lock briefly
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across process crashes
    conn.execute("BEGIN IMMEDIATE")  # takes the write lock: a read-only file fails right here
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS log_info (schema_version INTEGER)")
        versions = [row[0] for row in conn.execute("SELECT schema_version FROM log_info")]
        if not versions:
            conn.execute("INSERT INTO log_info (schema_version) VALUES (?)", (SCHEMA_VERSION,))
        elif any(not isinstance(v, int) or v > SCHEMA_VERSION for v in versions):
            newest = max(versions, key=lambda v: v if isinstance(v, int) else 1 << 62)
            raise ImgrecError(
                f"{path} was written by a newer imgrec (log schema {newest}; this one writes "
                f"{SCHEMA_VERSION}); upgrade imgrec or give --log a new file."
            )
        conn.execute(SCHEMA)
        present = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
        missing = [c for c in COLUMNS if c not in present]
        if missing:
            raise ImgrecError(
                f"{path} has a 'predictions' table that is not an imgrec prediction log (no "
                f"{', '.join(missing[:3])} column); give --log a new file."
            )
        conn.execute(INDEX)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def prune(
    conn: sqlite3.Connection, max_rows: int | None = None, max_days: float | None = None
) -> tuple[int, list[str]]:
    """Delete rows older than `max_days` and all but the newest `max_rows`, in one
    transaction. Returns (rows deleted, stored images no remaining row refers to)."""
    if max_rows is None and max_days is None:
        return 0, []
    doomed = "SELECT id FROM predictions WHERE 0"
    params: list[float | int] = []
    if max_days is not None:
        doomed += " OR ts < ?"
        params.append(time.time() - max_days * 86400)
    if max_rows is not None:
        doomed += (
            " OR id IN (SELECT id FROM predictions ORDER BY ts DESC, id DESC LIMIT -1 OFFSET ?)"
        )
        params.append(max_rows)
    conn.execute("BEGIN IMMEDIATE")
    try:
        images = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT image_path FROM predictions WHERE image_path IS NOT NULL "
                f"AND id IN ({doomed})",
                params,
            )
        ]
        deleted = conn.execute(f"DELETE FROM predictions WHERE id IN ({doomed})", params).rowcount
        kept = (
            set()
            if not images
            else {
                row[0]
                for row in conn.execute(  # one scan; json_each passes the list as one parameter
                    "SELECT DISTINCT image_path FROM predictions "
                    "WHERE image_path IN (SELECT value FROM json_each(?))",
                    (json.dumps(images),),
                )
            }
        )
        orphans = [image for image in images if image not in kept]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return deleted, orphans
