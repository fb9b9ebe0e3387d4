"""The prediction log's SQLite file as the writer holds it: opened (and created) safely, and
retention.

The schema itself is in schema.py, shared with the reader. Every problem with the file (missing
folder, not SQLite, read-only, a newer schema, a foreign `predictions` table) surfaces here, at
start, as one ImgrecError sentence, never as a failure in the middle of serving.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.prediction_log.schema import (
    CREATE_INDEX,
    CREATE_INFO,
    CREATE_TABLE,
    SCHEMA_VERSION,
    check_columns,
    check_versions,
    stored_versions,
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
        conn.execute(CREATE_INFO)
        versions = stored_versions(conn)
        if not versions:
            conn.execute("INSERT INTO log_info (schema_version) VALUES (?)", (SCHEMA_VERSION,))
        check_versions(versions, path, "upgrade imgrec or give --log a new file")
        conn.execute(CREATE_TABLE)
        check_columns(conn, path, "give --log a new file")
        conn.execute(CREATE_INDEX)
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


# How much earlier than the output file's modification time a killed run's first row may be
# stamped: file systems keep modification times to a second or two.
CLOCK_SLACK_S = 2.0


def logged_since_output(
    path: str | Path, model_id: str, source: str, last_written: str | None, written_at: float
) -> set[str]:
    """File names of the rows (of `model_id`, from `source`) a killed run logged but may not
    have written to its output, so that `--resume` does not log them twice.

    The run logs each batch before writing it out and records batches in output order, so
    every row it logged but did not write out is stamped no earlier than the log's newest row
    for `last_written`, the output's last predicted path. Without one (the output holds no
    prediction yet, or an earlier run wrote it without --log), no earlier than the output
    file's modification time `written_at`: its header was written before the first batch.
    Older rows, e.g. from yesterday's run over the same folder, are not counted.
    """
    where = "FROM predictions WHERE model_id = ? AND source = ?"
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        floor = None
        if last_written is not None:
            floor = conn.execute(
                f"SELECT MAX(ts) {where} AND filename = ?", (model_id, source, last_written)
            ).fetchone()[0]
        if floor is None:
            floor = written_at - CLOCK_SLACK_S
        found = conn.execute(f"SELECT filename {where} AND ts >= ?", (model_id, source, floor))
        return {row[0] for row in found}
    except sqlite3.Error as exc:
        raise ImgrecError(f"cannot read the prediction log {path} to resume ({exc}).") from None
    finally:
        conn.close()
