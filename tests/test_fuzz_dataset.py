"""Property-based tests of CSV datasets through `imgrec.load_dataset`: whatever the file holds,
the answer is a Dataset or one ImgrecError line, never another exception; and no row is lost
without a trace: every data row becomes a sample or a skipped entry with its reason.

The CSVs have random headers (any case, spaces, duplicates, extra columns, none at all), any
quoting, five encodings with and without a byte-order mark, and cells that are paths inside the
folder, outside it (../, absolute), missing, NUL bytes, newlines, 200 000 characters, or noise.

`make test` runs the "ci" Hypothesis profile (40 examples per test), `make fuzz` thousands.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from imagegen import write_kind, write_rgb

from imgrec import load_dataset
from imgrec.data.dataset import Dataset
from imgrec.errors import ImgrecError

pytestmark = pytest.mark.fuzz

MAX_MESSAGE = 1000  # characters: an error is one readable line, whatever the file held
ENCODINGS = ("utf-8", "utf-8", "utf-8-sig", "utf-8-sig", "utf-16", "latin-1", "cp1252")
QUOTING = (csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC)
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """data/ with two images, a sub-folder image and a broken file; an image outside it."""
    base = tmp_path_factory.mktemp("fuzz-csv")
    data = base / "data"
    write_rgb(data / "a.png")
    write_rgb(data / "b.jpg")
    write_rgb(data / "sub" / "c.png")
    write_kind(data, "truncated_jpeg")
    write_rgb(base / "outside.png")
    return data


TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
HEADER_NAMES = st.one_of(
    st.sampled_from(["path", "label", "split", "PATH", " Label ", "camera", "site", "", "path"]),
    TEXT,
)


def path_cells(folder: Path) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["a.png", "b.jpg", "sub/c.png", "./a.png", "sub/../b.jpg"]),
        st.sampled_from(["truncated.jpg", "missing.png", "sub", ".", "", "  "]),
        st.sampled_from(["../outside.png", "../../../../etc/passwd", "~/a.png", "/dev/null"]),
        st.sampled_from([str(folder / "a.png"), str(folder.parent / "outside.png")]),
        st.sampled_from(["a.png\x00.jpg", "a\nb.png", "x" * 300, "x/" * 3000]),
        TEXT,
    )


ODD = st.sampled_from(["\x00", "a\x00b", "\r\n", '"', "=1+1", "\ufeff", "\u202e", "x" * 2000])
HUGE = "x" * 200_000  # beyond the csv module's field limit (131 072)
LABELS = st.one_of(st.sampled_from(["cat", "dog", "cat", "dog", "", " "]), TEXT, ODD)
SPLITS = st.one_of(st.sampled_from(["train", "val", "VALIDATION", " test ", "", "holdout"]), ODD)
CELLS = st.one_of(TEXT, ODD)


@st.composite
def csv_tables(draw, folder: Path) -> list[list[str]]:
    """A header (usually naming path and label, anywhere among other columns) and up to eight
    rows of cells fit for their column, or not, and sometimes of another length."""
    header = draw(st.lists(HEADER_NAMES, min_size=0, max_size=4))
    if draw(st.integers(0, 3)):  # most files name both columns somewhere
        at = draw(st.integers(0, len(header)))
        header[at:at] = draw(st.permutations(["path", "label", "split"][: draw(st.integers(2, 3))]))
    columns = {"path": path_cells(folder), "label": LABELS, "split": SPLITS}
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        row = [draw(columns.get(name, CELLS)) for name in header]
        if not draw(st.integers(0, 4)):  # a short or long row
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(CELLS, max_size=2))
        rows.append(row)
    if rows and not draw(st.integers(0, 9)):
        rows[draw(st.integers(0, len(rows) - 1))].append(HUGE)
    return [header, *rows] if header or rows else []


def write_table(path: Path, table: list[list[str]], encoding: str, quoting: int) -> None:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, quoting=quoting).writerows(table)
    path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))


def assert_one_line(exc: ImgrecError) -> None:
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, message
    assert len(message) <= MAX_MESSAGE, message[:300]


def data_rows(path: Path) -> int | None:
    """Data rows with any non-blank cell, as imgrec should count them (None: not UTF-8)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error):
        return None
    return sum(1 for row in rows[1:] if any(cell.strip() for cell in row))


def load_or_error(path: Path) -> Dataset | None:
    try:
        dataset = load_dataset(path)
    except ImgrecError as exc:
        assert_one_line(exc)
        event(f"error: {str(exc)[:24]}")
        return None
    event(f"a dataset of {min(len(dataset), 2)}+ images")
    return dataset


@FUZZ
@given(data=st.data())
def test_csv_datasets_load_or_fail_in_one_line_and_lose_no_row(folder, data):
    table = data.draw(csv_tables(folder))
    encoding, quoting = data.draw(st.sampled_from(ENCODINGS)), data.draw(st.sampled_from(QUOTING))
    path = folder / "fuzz.csv"
    write_table(path, table, encoding, quoting)
    dataset = load_or_error(path)
    if dataset is None:
        return
    for sample in dataset.samples:
        assert sample.path.is_file() and sample.label
    expected = data_rows(path)
    if expected is not None:
        assert len(dataset.samples) + len(dataset.skipped) == expected


@FUZZ
@given(raw=st.binary(max_size=4096), bom=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"]))
def test_csv_files_of_any_bytes_load_or_fail_in_one_line(folder, raw, bom):
    path = folder / "raw.csv"
    path.write_bytes(bom + b"path,label\n" + raw)
    load_or_error(path)
