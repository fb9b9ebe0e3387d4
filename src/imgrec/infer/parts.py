"""An output folder of numbered parts (part-00000.parquet, ...) that a long job fills as it runs.

A job over millions of images must keep what it has done when it dies. Rows are buffered and
written as one part every `rows_per_part` rows or `seconds_per_part` seconds, whichever comes
first. Each part is written to a hidden temporary name and renamed into place, so a part is
either whole or absent: a crash loses at most the rows not yet written, and `--resume` reads
back exactly the sources the whole parts hold (`done_sources`) and leaves out the rest. A
folder that already holds parts is never overwritten without --resume.

Formats: Parquet (pyarrow; list columns stay lists, floats stay float32) or CSV, whose text
cells go through imgrec.text.csv_cell like `imgrec predict`'s, so a file name cannot become a
spreadsheet formula. Read a folder of Parquet parts with `pandas.read_parquet(folder)` or
DuckDB's `read_parquet('folder/*.parquet')`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imgrec.errors import ImgrecError
from imgrec.text import csv_cell, csv_value, shown

PART_FORMATS = ("parquet", "csv")
SOURCE = "path"  # the column every part has: the input it answers for
_CSV_STEMS = {"classes": "class", "probabilities": "prob"}  # list column -> class1, class2, ...
_PART = re.compile(r"^part-(\d{5,})\.(parquet|csv)$")


class OutputParts:
    """Write tables of one schema into `folder` as parts; see the module docstring."""

    def __init__(
        self,
        folder: Path,
        schema: pa.Schema,
        fmt: str = "parquet",
        *,
        resume: bool = False,
        rows_per_part: int = 10_000,
        seconds_per_part: float = 30.0,
    ) -> None:
        if fmt not in PART_FORMATS:
            raise ImgrecError(f"output parts are {' or '.join(PART_FORMATS)}, not '{fmt}'.")
        self.folder = Path(folder)
        self.schema = schema
        self.fmt = fmt
        self.rows_per_part = max(1, rows_per_part)
        self.seconds_per_part = seconds_per_part
        self.rows_written = 0
        self.parts_written = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._last_write = time.monotonic()
        existing = self._prepare(resume)
        self._next = max((n for n, _ in existing), default=-1) + 1
        self._existing = [path for _, path in existing]

    # ---- what is there -----------------------------------------------------------------
    def _prepare(self, resume: bool) -> list[tuple[int, Path]]:
        """Create the folder, drop temporary files a crash left, and return the whole parts
        (number, path); ImgrecError when parts are there and `resume` is off, or when they are
        of the other format."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            names = os.listdir(self.folder)
        except OSError as exc:
            raise ImgrecError(f"cannot write to {self.folder} ({exc.strerror or exc}).") from None
        for name in names:
            if name.startswith(".part-") and name.endswith(".tmp"):
                (self.folder / name).unlink(missing_ok=True)
        parts = sorted(
            (int(m.group(1)), m.group(2), self.folder / name)
            for name in names
            if (m := _PART.match(name))
        )
        if parts and not resume:
            raise ImgrecError(
                f"{self.folder} already holds {len(parts)} output part(s) of an earlier run: "
                "add --resume to continue it, or give another --out folder."
            )
        other = [path for _, kind, path in parts if kind != self.fmt]
        if other:
            raise ImgrecError(
                f"{self.folder} holds {other[0].suffix[1:]} parts; resume with the same --format."
            )
        return [(n, path) for n, _, path in parts]

    def done_sources(self) -> set[str]:
        """The sources the whole parts already answer for (what --resume leaves out)."""
        done: set[str] = set()
        for path in self._existing:
            done.update(self._read_sources(path))
        return done

    def _read_sources(self, path: Path) -> list[str]:
        try:
            if self.fmt == "parquet":
                table = pq.read_table(path, columns=[SOURCE])
                return [str(s) for s in table.column(SOURCE).to_pylist()]
            with path.open(newline="", encoding="utf-8") as f:
                rows = csv.reader(f)
                header = next(rows, [])
                column = header.index(SOURCE)
                return [csv_value(row[column]) for row in rows if row]
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise ImgrecError(
                f"cannot read {shown(path)} to resume ({str(exc).splitlines()[0][:160]}); "
                "move it away and resume again (its images are then done again)."
            ) from None

    # ---- writing -----------------------------------------------------------------------
    def add(self, table: pa.Table) -> None:
        """Buffer `table`'s rows; write a part of `rows_per_part` rows whenever that many have
        gathered, or of what there is once `seconds_per_part` have passed since the last."""
        if table.num_rows == 0:
            return
        self._pending.append(table.select(self.schema.names).cast(self.schema))
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.rows_per_part:
            self._write(self.rows_per_part)
        if self._pending and time.monotonic() - self._last_write >= self.seconds_per_part:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row as the next part (nothing when none are buffered)."""
        if self._pending_rows:
            self._write(self._pending_rows)

    def _write(self, rows: int) -> None:
        """Write the first `rows` buffered rows as the next part, keeping the rest buffered."""
        self._last_write = time.monotonic()
        buffered = pa.concat_tables(self._pending)
        table, rest = buffered.slice(0, rows), buffered.slice(rows)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        name = f"part-{self._next:05d}.{self.fmt}"
        temporary = self.folder / f".{name}.tmp"
        try:
            if self.fmt == "parquet":
                pq.write_table(table, temporary)
            else:
                temporary.write_text(_csv_text(table), encoding="utf-8", newline="")
            os.replace(temporary, self.folder / name)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            why = exc.strerror or exc
            raise ImgrecError(f"cannot write {self.folder / name} ({why}).") from None
        self._next += 1
        self.parts_written += 1
        self.rows_written += table.num_rows

    def close(self) -> None:
        self.flush()


def read_parts(folder: Path) -> pa.Table:
    """Every whole part of `folder` as one table (tests, small outputs)."""
    paths = sorted(p for p in Path(folder).iterdir() if _PART.match(p.name))
    if not paths:
        raise ImgrecError(f"no output parts in {folder}.")
    if paths[0].suffix == ".parquet":
        return pa.concat_tables([pq.read_table(p) for p in paths])
    import pyarrow.csv as pacsv

    return pa.concat_tables([pacsv.read_csv(p) for p in paths], promote_options="permissive")


def _csv_text(table: pa.Table) -> str:
    """CSV of `table` with a header; list columns are spread over numbered columns (class1,
    prob1, ...), text cells are made safe for spreadsheets."""
    columns: list[tuple[str, list]] = []
    for name in table.column_names:
        values = table.column(name).to_pylist()
        kind = table.schema.field(name).type
        if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
            width = max((len(v) for v in values if v is not None), default=0)
            for i in range(width):
                cells = [v[i] if v is not None and i < len(v) else None for v in values]
                columns.append((f"{_CSV_STEMS.get(name, name)}{i + 1}", cells))
        else:
            columns.append((name, values))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([name for name, _ in columns])
    for row in zip(*(cells for _, cells in columns), strict=True):
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, str):
        return csv_cell(value)
    return str(value)
