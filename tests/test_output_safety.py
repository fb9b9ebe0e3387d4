"""Names from untrusted sources must not take over what imgrec prints or writes.

Class names and file names come from folders and CSVs other people made. Shown raw they could
crash Rich (`[/x]` is a closing markup tag), vanish or restyle (`[bold]dogs[/bold]`), drive the
terminal (ESC sequences, OSC 8 hyperlinks, U+202E reordering), or run as a spreadsheet formula
in a CSV (`=HYPERLINK(...)`). The CLI tests share one tiny model (svm-hog, seconds to train)
trained on a CSV dataset whose labels and file names are exactly such names.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from imagegen import write_kind
from runhelpers import assert_user_error, cli_env, read_csv, run_imgrec, sample_files, squash

from imgrec.runs.leaderboard import Entry, Leaderboard, write_csv
from imgrec.text import csv_cell, csv_value, json_text, printable

OSC8 = "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\"  # a terminal hyperlink
# Class names: a model file refuses C0/C1 controls in its metadata (imgrec.bundle.metadata),
# so those are tried in file names; a bidi override is allowed in both.
LABELS = ("[/x]", '=HYPERLINK("http://x","y")', "[bold]dogs[/bold]", "\u202egpj.exe", "café 猫")
OSC8_FILE = OSC8.replace("http://", "http:")  # no slash in a file name
PREFIXES = ("=cmd", OSC8_FILE, "+x", "-2+3", "@SUM(1)\x1b[2J\x07")  # one file each per class
SHOWN = ("[/x]", '=HYPERLINK("http://x","y")', "[bold]dogs[/bold]", "\\u202egpj.exe", "café 猫")


# ---- the text helpers ----------------------------------------------------------------------
def test_printable_makes_controls_visible_and_keeps_letters():
    assert printable(OSC8) == "\\x1b]8;;http://evil\\x1b\\click\\x1b]8;;\\x1b\\"
    assert printable("\u202egpj.exe\x07\x9b\r") == "\\u202egpj.exe\\x07\\x9b\\x0d"
    assert printable("café 猫 Ελλάδα") == "café 猫 Ελλάδα"
    assert printable("x\udcffy") == "x\\xffy"  # an undecodable file-name byte
    assert printable("a\n\tb\x1b", lines=True) == "a\n\tb\\x1b"


@pytest.mark.parametrize(
    "text", ["=1+2", "+cmd", "-2+3", "@SUM(1)", "\tx", "\rx", "'=x", "''@y", LABELS[1], OSC8]
)
def test_csv_cell_quotes_formulas_and_csv_value_undoes_it(text):
    cell = csv_cell(text)
    assert cell[0] == "'" if text[0] in "=+-@\t\r'" else cell == text
    assert csv_value(cell) == text


@pytest.mark.parametrize("text", ["ants", "'quoted", "café", "a=b", "0.5"])
def test_csv_cell_leaves_ordinary_text_alone(text):
    assert csv_cell(text) == text == csv_value(text)


def test_json_text_is_the_same_value_with_nothing_a_terminal_obeys():
    document = {"names": [*LABELS, OSC8, "x\udcffy", "café\u2028"]}
    text = json_text(document)
    assert json.loads(text) == document
    assert not any(ch in text for ch in "\x1b\u202e\udcff\u2028")
    assert "café" in text


def test_leaderboard_csv_quotes_text_cells_only(tmp_path):
    entries = [
        Entry("svm-hog", "classic", "failed", note='=HYPERLINK("http://x","y") broke'),
        Entry("rf-hog", "classic", accuracy=-0.5, note="-2+3"),
    ]
    board = Leaderboard(tmp_path, entries, "test", 4, False, 60.0, 1.0)
    write_csv(board, tmp_path / "leaderboard.csv")
    rows = read_csv(tmp_path / "leaderboard.csv")
    assert rows[0]["note"].startswith("'=HYPERLINK")
    assert rows[1]["note"] == "'-2+3"
    assert rows[1]["accuracy"] == "-0.5"  # numbers stay numbers


# ---- the real CLI on hostile names ---------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A CSV dataset whose labels are LABELS and whose files sit in a folder `[/x]` under
    names starting with =, ESC, +, - and @; one unreadable file; svm-hog trained on it."""
    base = tmp_path_factory.mktemp("hostile")
    folder = base / "data" / "[" / "x]"  # the path reads data/[/x]/...
    folder.mkdir(parents=True)
    rows = []
    for i, label in enumerate(LABELS):
        files = sample_files("train", ("ants", "bees")[i % 2], len(PREFIXES), skip=i // 2 * 5)
        for prefix, source in zip(PREFIXES, files, strict=True):
            rows.append((shutil.copy2(source, folder / f"{prefix}{i}.jpg"), label))
    bad = write_kind(base / "bad", "zero_bytes").rename(folder / "=bad.jpg")
    rows.append((bad, LABELS[0]))
    with open(base / "data.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    run = base / "run"
    result = run_imgrec("train", base / "data.csv", "--model", "svm-hog", "--out", run, "-q")
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return SimpleNamespace(base=base, folder=folder, csv=base / "data.csv", run=run, bad=bad)


def _run_wide(*args) -> subprocess.CompletedProcess:
    """run_imgrec with room for whole table cells (Rich wraps names at 80 columns in a pipe)."""
    return subprocess.run(
        [sys.executable, "-m", "imgrec", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**cli_env(), "COLUMNS": "1000"},
        timeout=300,
    )


# predict's exit code when an input was skipped (the folder holds =bad.jpg, zero bytes)
SKIPPED = (0, 5)


def _assert_safe(result, *shown: str, codes: tuple[int, ...] = (0,)) -> None:
    """An expected exit code, each name shown literally, no raw ESC, BEL, CSI or U+202E."""
    output = result.stdout + result.stderr
    assert result.returncode in codes, output
    assert "Traceback" not in output, output
    for ch in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert ch not in output, f"raw {ch!r} in the output:\n{output!r}"
    for name in shown:
        assert squash(name) in squash(output), f"{name!r} not shown:\n{output}"


def test_info_shows_hostile_class_names_literally(hostile):
    result = _run_wide("info", hostile.run / "model.imgrec")
    _assert_safe(result, *SHOWN)
    as_json = run_imgrec("info", hostile.run / "model.imgrec", "--json")
    _assert_safe(as_json)
    assert json.loads(as_json.stdout)["classes"] == sorted(LABELS)


def test_predict_table_and_json_show_hostile_names_safely(hostile):
    table = _run_wide("predict", hostile.run / "model.imgrec", hostile.folder, "--top-k", "5")
    _assert_safe(
        table, *SHOWN, "data/[/x]/=cmd0.jpg", printable(f"{OSC8_FILE}1.jpg"), codes=SKIPPED
    )
    as_json = run_imgrec("predict", hostile.run / "model.imgrec", hostile.folder, "-f", "json")
    _assert_safe(as_json, codes=SKIPPED)
    document = json.loads(as_json.stdout)
    paths = {Path(p["path"]).name for p in document["predictions"]}
    assert f"{OSC8_FILE}1.jpg" in paths  # the exact name, only escaped as JSON
    assert {p["top"][0]["class"] for p in document["predictions"]} <= set(LABELS)


def test_predict_csv_quotes_formulas_and_resume_still_finds_them(hostile, tmp_path):
    out = tmp_path / "preds.csv"
    args = ("predict", hostile.run / "model.imgrec", ".", "-f", "csv", "-o", out, "-k", "5")
    _assert_safe(run_imgrec(*args, cwd=hostile.folder), str(out), codes=SKIPPED)
    rows = read_csv(out)
    by_name = {csv_value(r["path"]): r for r in rows}  # relative: =cmd0.jpg, -2+33.jpg, ...
    assert len(rows) == len(LABELS) * len(PREFIXES) + 1
    assert by_name["=cmd0.jpg"]["path"] == "'=cmd0.jpg"
    assert by_name["-2+33.jpg"]["path"] == "'-2+33.jpg"
    assert by_name["=bad.jpg"]["path"] == "'=bad.jpg" and by_name["=bad.jpg"]["skipped"]
    classes = {r[f"class{i}"] for r in rows if not r["skipped"] for i in range(1, 6)}
    assert {csv_value(c) for c in classes} == set(LABELS)
    assert "'" + LABELS[1] in classes
    assert all(0 <= float(r["prob1"]) <= 1 for r in rows if not r["skipped"])
    again = run_imgrec(*args, "--resume", cwd=hostile.folder)
    _assert_safe(again, "wrote 0 predictions", codes=SKIPPED)
    assert read_csv(out) == rows  # every quoted path was recognised as done


def test_predict_csv_on_stdout_quotes_formulas(hostile):
    args = ("predict", hostile.run / "model.imgrec", ".", "-f", "csv", "-k", "5")
    result = run_imgrec(*args, cwd=hostile.folder)
    assert result.returncode in SKIPPED, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert {r["path"] for r in rows} >= {"'=cmd0.jpg", "'+x2.jpg", "'@SUM(1)\x1b[2J\x074.jpg"}
    assert "'" + LABELS[1] in {r[f"class{i}"] for r in rows for i in range(1, 6)}


def test_skipped_csv_quotes_formulas(tmp_path):
    from imgrec.data.dataset import Dataset, Skipped

    skipped = [Skipped(Path("=bad.jpg"), "zero bytes"), Skipped(Path("ok.jpg"), "@reason")]
    Dataset(tmp_path, [], ["a", "b"], skipped).write_skipped(tmp_path / "skipped.csv")
    rows = read_csv(tmp_path / "skipped.csv")
    assert [(r["path"], r["reason"]) for r in rows] == [
        ("'=bad.jpg", "zero bytes"),
        ("ok.jpg", "'@reason"),
    ]


def test_split_and_audit_show_hostile_names_and_split_csv_reads_back(hostile, tmp_path):
    out = tmp_path / "[" / "x]" / "split.csv"
    result = _run_wide("split", hostile.csv, "--out", out, "--no-embeddings", "-q")
    _assert_safe(result, "[bold]dogs[/bold]", "[/x]/split.csv")
    from imgrec.data.dataset import load_dataset

    # split.csv is read back as a dataset: its names stay exact, not quoted
    assert sorted({s.label for s in load_dataset(out).samples}) == sorted(LABELS)
    audit = run_imgrec("audit", hostile.csv, "--out", tmp_path / "[/x]", "--no-embeddings", "-q")
    assert audit.returncode in (0, 3), audit.stderr
    _assert_safe(SimpleNamespace(returncode=0, stdout=audit.stdout, stderr=audit.stderr), "[/x]")


def test_an_error_naming_a_hostile_path_is_one_literal_line(tmp_path):
    missing = tmp_path / "[" / "x]" / "\x1b[31mmodel.imgrec"
    result = run_imgrec("info", missing)
    line = assert_user_error(result, "[/x]", "\\x1b[31mmodel.imgrec")
    assert "\x1b" not in line


def test_predict_csv_rows_on_a_terminal_show_controls_visibly():
    from imgrec.infer.predict import _RowWriter

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    rows = ([Path("=\x1b[2Jx.jpg")], [(["\u202eevil"], [0.5])], [])
    on_terminal, in_file = Terminal(), io.StringIO()
    _RowWriter("csv", 1).batch(on_terminal, *rows)
    _RowWriter("csv", 1).batch(in_file, *rows)
    assert on_terminal.getvalue() == "'=\\x1b[2Jx.jpg,\\u202eevil,0.500000,\r\n"
    assert in_file.getvalue() == "'=\x1b[2Jx.jpg,\u202eevil,0.500000,\r\n"  # exact in a file


def test_a_usage_error_quoting_the_input_shows_it_literally(tmp_path):
    since = "[/x]\x1b[2J"
    (tmp_path / "m.imgrec").write_text("not a model")  # the --since refusal comes first
    result = _run_wide("drift", tmp_path / "m.imgrec", "--current", "x", "--since", since)
    assert result.returncode == 2, result.stderr
    assert "\x1b" not in result.stderr and printable(since) in result.stderr
