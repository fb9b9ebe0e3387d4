"""The prediction log's contract, declared once: the writer (db.py, writer.py) and the reader
(reader.py, which monitor's drift windows use) both import it, so they cannot disagree.

The contract: an SQLite file with a table `predictions` of COLUMNS and a table `log_info` whose
`schema_version` is SCHEMA_VERSION. Columns are only ever added, with a new version; a file of a
newer version is refused with one sentence rather than half understood. Models are named by
`model_id`, and signatures are float16 (SIGNATURE_DTYPE) blobs.

Only the standard library here, so reading a log loads neither torch nor FastAPI.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from imgrec.errors import ImgrecError

SCHEMA_VERSION = 1
COLUMNS = (
    "ts", "model_id", "model_version", "source", "filename", "sha256", "width", "height",
    "brightness", "contrast", "sharpness", "label", "confidence", "top_k", "signature",
    "image_path",
)  # fmt: skip
CREATE_TABLE = """
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
CREATE_INFO = "CREATE TABLE IF NOT EXISTS log_info (schema_version INTEGER)"
CREATE_INDEX = "CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts)"
INSERT = (
    f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)
SIGNATURE_DTYPE = "<f2"  # little-endian float16, models/signature.py's SIGNATURE_DIMS of them
MODEL_ID_DIGITS = 16


def model_id(model_path: str | Path) -> str:
    """How the log names a model: the first 16 hex digits of its file's sha256, so a row says
    which exact file answered (a retrained model under the same name is another model)."""
    digest = hashlib.sha256()
    try:
        with open(model_path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ImgrecError(f"cannot read {model_path} ({exc.strerror or exc}).") from None
    return digest.hexdigest()[:MODEL_ID_DIGITS]


def stored_versions(conn: sqlite3.Connection) -> list:
    """Every schema_version recorded in `log_info` (one, unless someone edited the file)."""
    return [row[0] for row in conn.execute("SELECT schema_version FROM log_info")]


def check_versions(versions: Iterable, path: Path, advice: str) -> None:
    """Raise ImgrecError (one sentence ending in `advice`) unless every recorded version is
    one this imgrec reads and writes: a newer file may mean its columns differently."""
    for version in versions:
        if not isinstance(version, int) or version < 1:
            raise ImgrecError(
                f"{path} is a prediction log with an unknown schema version ({version!r}); "
                f"{advice}."
            )
        if version > SCHEMA_VERSION:
            raise ImgrecError(
                f"{path} is a prediction log of schema version {version}, written by a newer "
                f"imgrec (this one reads and writes version {SCHEMA_VERSION}); {advice}."
            )


def check_columns(conn: sqlite3.Connection, path: Path, advice: str) -> None:
    """Raise ImgrecError unless the `predictions` table has every column of the contract (a
    table of that name from another program is refused, not written into or misread)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
    missing = [c for c in COLUMNS if c not in present]
    if missing:
        raise ImgrecError(
            f"{path} has a 'predictions' table that is not an imgrec prediction log (no "
            f"{', '.join(missing[:3])} column); {advice}."
        )
