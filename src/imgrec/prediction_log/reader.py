"""Reading a prediction log: opened read-only and checked against schema.py before any row.

Read-only because a check may run while a server writes the file, and a monitor must never
change it. The checks are the writer's (schema.py), so whatever `imgrec serve --log` and
`imgrec predict --log` wrote reads back, and anything else ends in one ImgrecError sentence.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.prediction_log.schema import (
    COLUMNS,
    check_columns,
    check_versions,
    stored_versions,
)

_SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite_file(path: Path) -> bool:
    """True for a file that starts with SQLite's header (whatever its extension)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


class LogReader:
    """The prediction log at `path`, open read-only; raises ImgrecError (one sentence) now
    unless it is a log of a schema this imgrec reads. Use it as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = _connect(self.path)
        try:
            with self._reading():
                _check(self._conn, self.path)
        except BaseException:
            self._conn.close()
            raise

    def model_counts(self, since: float | None = None, until: float | None = None) -> dict:
        """{model_id: rows} of the rows with since <= ts < until (unix seconds)."""
        where, args = _where(since, until, None)
        sql = f"SELECT model_id, COUNT(*) FROM predictions WHERE {where} GROUP BY model_id"
        with self._reading():
            return dict(self._conn.execute(sql, args).fetchall())

    def rows(
        self,
        columns: Sequence[str] = COLUMNS,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
    ) -> list[sqlite3.Row]:
        """The rows with since <= ts < until of the model whose id is `model` (every model
        when None), oldest first; each row reads by column name or position."""
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise ValueError(f"not prediction-log columns: {unknown}")
        where, args = _where(since, until, model)
        sql = f"SELECT {', '.join(columns)} FROM predictions WHERE {where} ORDER BY ts"
        with self._reading():
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A damaged file or a lock held too long: one sentence, not an sqlite3 traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise ImgrecError(f"cannot read the prediction log {self.path} ({exc}).") from exc


def check_log(path: str | Path) -> None:
    """Raise ImgrecError unless `path` is a prediction log this imgrec can read."""
    LogReader(path).close()


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ImgrecError(f"no such prediction log: {path}")
    if not is_sqlite_file(path):
        raise ImgrecError(f"{path} is not a SQLite file, so not an imgrec prediction log.")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise ImgrecError(f"cannot open the prediction log {path} ({exc}).") from exc
    connection.row_factory = sqlite3.Row
    return connection


def _check(connection: sqlite3.Connection, path: Path) -> None:
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "predictions" not in tables or "log_info" not in tables:
        raise ImgrecError(
            f"{path} is a SQLite database but not an imgrec prediction log (it has no "
            "predictions and log_info tables)."
        )
    versions = stored_versions(connection)
    if not versions:
        raise ImgrecError(f"{path} is a prediction log without a schema version (log_info).")
    check_versions(versions, path, "upgrade imgrec to read it")
    check_columns(connection, path, "imgrec cannot read it")


def _where(
    since: float | None, until: float | None, model: str | None
) -> tuple[str, list[float | str]]:
    where, args = ["1 = 1"], []
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if until is not None:
        where.append("ts < ?")
        args.append(until)
    if model is not None:
        where.append("model_id = ?")
        args.append(model)
    return " AND ".join(where), args
