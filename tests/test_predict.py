"""`imgrec predict` engines and streaming output: ONNX Runtime vs PyTorch parity, CSV / JSON
Lines written batch by batch, `--resume` (also after a crash mid-line), unreadable files.

One head-only model (seconds) serves the whole module; most checks call the library directly
and a few run the real CLI in a subprocess.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from imagegen import write_kind
from runhelpers import assert_user_error, read_csv, run_imgrec, sample_files
from servehelpers import small_model

from imgrec import ImageClassifier
from imgrec.bundle.predictor import open_predictor
from imgrec.infer.predict import BatchPredictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def clf(model) -> ImageClassifier:
    return ImageClassifier.load(model)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sample_files("val", "bees", 5) + sample_files("val", "ants", 5)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("bad")
    return [write_kind(folder, "truncated_jpeg"), write_kind(folder, "text_as_png")]


@pytest.fixture(scope="module")
def onnx_predictor(clf) -> BatchPredictor:
    return clf.batch_predictor("onnx", batch_size=4)  # 10 photos: batches 4, 4, 2 (padded)


def test_onnx_engine_matches_torch(clf, onnx_predictor, photos, bad):
    assert onnx_predictor.engine.name == "onnx"
    inputs = photos[:3] + bad[:1] + photos[3:]
    paths_o, probs_o, skipped_o = onnx_predictor.predict_proba(inputs)
    paths_t, probs_t, skipped_t = clf.batch_predictor("torch", 4).predict_proba(inputs)
    assert paths_o == paths_t == photos
    assert [s.path for s in skipped_o] == [s.path for s in skipped_t] == bad[:1]
    assert (probs_o.argmax(1) == probs_t.argmax(1)).all()
    np.testing.assert_allclose(probs_o, probs_t, atol=1e-4)


def test_onnx_file_from_export_predicts_the_same(clf, onnx_predictor, photos, tmp_path):
    from imgrec.export.onnx_export import export_onnx_bytes, onnx_metadata, save_with_metadata
    from imgrec.models.static_pad import with_static_padding

    size = clf.preprocessing.input_size
    path = tmp_path / "model.onnx"
    graph = export_onnx_bytes(with_static_padding(clf.network, size), size)
    save_with_metadata(graph, path, onnx_metadata(clf.classes, clf.preprocessing, {}, "none"))
    from_file = open_predictor(path, batch_size=4)
    assert from_file.classes == clf.classes
    _, expected, _ = onnx_predictor.predict_proba(photos)
    _, probs, _ = from_file.predict_proba(photos)
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_stream_csv_rows_and_skipped_convention(onnx_predictor, photos, bad, tmp_path):
    out = tmp_path / "p.csv"
    seen = []
    summary = onnx_predictor.predict_to_file(photos + bad, out, "csv", top_k=2, on_skip=seen.append)
    assert (summary.predicted, summary.skipped) == (10, 2)
    assert [s.path for s in seen] == bad
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,class1,prob1,class2,prob2,skipped"
    rows = read_csv(out)
    assert [r["path"] for r in rows] == [str(p) for p in photos + bad]  # input order kept
    for r in rows[:10]:
        assert r["skipped"] == "" and r["class1"] in ("ants", "bees")
        assert float(r["prob1"]) + float(r["prob2"]) == pytest.approx(1.0, abs=1e-5)
    for r in rows[10:]:
        assert r["class1"] == r["prob1"] == "" and r["skipped"]


def test_stream_jsonl_records(onnx_predictor, photos, bad, tmp_path):
    out = tmp_path / "p.jsonl"
    onnx_predictor.predict_to_file(photos[:3] + bad[1:], out, "jsonl", top_k=1)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in photos[:3] + bad[1:]]
    assert all(len(r["top"]) == 1 for r in records[:3])
    assert records[3] == {"path": str(bad[1]), "skipped": "not an image"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_a_crash_mid_line(onnx_predictor, photos, bad, tmp_path, fmt):
    everything = photos + bad
    out = tmp_path / f"p.{fmt}"
    onnx_predictor.predict_to_file(everything, out, fmt)
    reference = out.read_bytes()
    # a crash after 6 inputs, half-way through writing the 7th line
    lines = reference.splitlines(keepends=True)
    head = 1 if fmt == "csv" else 0
    out.write_bytes(b"".join(lines[: head + 6]) + lines[head + 6][:20])
    summary = onnx_predictor.predict_to_file(everything, out, fmt, resume=True)
    assert summary.dropped_partial_line
    assert (summary.already_done, summary.predicted, summary.skipped) == (6, 4, 2)
    assert out.read_bytes() == reference  # same rows, each once, nothing rewritten
    again = onnx_predictor.predict_to_file(everything, out, fmt, resume=True)
    assert (again.already_done, again.predicted, again.dropped_partial_line) == (12, 0, False)
    assert out.read_bytes() == reference


def test_resume_refuses_other_columns(onnx_predictor, photos, tmp_path):
    from imgrec.errors import ImgrecError

    out = tmp_path / "p.csv"
    onnx_predictor.predict_to_file(photos[:2], out, "csv", top_k=1)
    with pytest.raises(ImgrecError, match="same --top-k"):
        onnx_predictor.predict_to_file(photos, out, "csv", top_k=2, resume=True)


# ---- the CLI --------------------------------------------------------------------------------
def test_cli_csv_resume_and_engine_agree(model, photos, bad, tmp_path):
    out_onnx, out_torch = tmp_path / "onnx.csv", tmp_path / "torch.csv"
    first = run_imgrec("predict", model, *photos[:4], "-f", "csv", "-o", out_onnx, "--resume")
    assert first.returncode == 0, first.stderr
    assert "wrote 4 predictions" in first.stdout and "onnx" in first.stdout
    second = run_imgrec("predict", model, *photos, *bad, "-f", "csv", "-o", out_onnx, "--resume")
    assert second.returncode == 5, second.stderr  # files were skipped
    assert "wrote 6 predictions" in second.stdout and "4 already there" in second.stdout
    for path in bad:  # named on stderr too
        assert str(path.name) in second.stderr
    torch_run = run_imgrec(
        "predict", model, *photos, *bad, "-f", "csv", "-o", out_torch, "--engine", "torch"
    )
    assert torch_run.returncode == 5, torch_run.stderr
    onnx_rows, torch_rows = read_csv(out_onnx), read_csv(out_torch)
    assert [r["path"] for r in onnx_rows] == [r["path"] for r in torch_rows]
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a["class1"] == b["class1"] and a["skipped"] == b["skipped"]
        if a["prob1"]:
            assert abs(float(a["prob1"]) - float(b["prob1"])) <= 1e-4


def test_cli_jsonl_to_stdout(model, photos):
    result = run_imgrec("predict", model, *photos[:2], "-f", "jsonl", "-k", "2")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in photos[:2]]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-f", "csv", "--resume"], "--resume needs --out"),
        (["-f", "json", "-o", "x.json", "--resume"], "--resume needs --out"),
    ],
)
def test_cli_resume_misuse_is_one_line(model, photos, tmp_path, args, fragment):
    result = run_imgrec("predict", model, photos[0], *args, cwd=tmp_path)
    assert_user_error(result, fragment)


def test_cli_onnx_file_with_torch_engine_is_one_line(model, photos, tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not onnx")
    assert_user_error(run_imgrec("predict", fake, photos[0], "--engine", "torch"), "--engine torch")
    assert_user_error(run_imgrec("predict", fake, photos[0]), "not a usable ONNX model")


def test_cli_resume_with_other_top_k_is_one_line(model, photos, tmp_path):
    out = tmp_path / "p.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(["path", "class1", "prob1", "skipped"])
    result = run_imgrec("predict", model, photos[0], "-k", "2", "-f", "csv", "-o", out, "--resume")
    assert_user_error(result, "same --top-k")


def test_cli_min_confidence_labels_unknown_and_keeps_the_guesses(model, clf, photos, tmp_path):
    out = tmp_path / "p.csv"
    args = ("-f", "csv", "-o", out, "-k", "2", "--min-confidence", "0.9")
    result = run_imgrec("predict", model, *photos, *args)
    assert result.returncode == 0, result.stderr
    rows = read_csv(out)
    assert list(rows[0]) == ["path", "label", "class1", "prob1", "class2", "prob2", "skipped"]
    for row, want in zip(rows, clf.predict(photos, top_k=2), strict=True):
        assert row["class1"] == want.label  # what the model guessed stays visible
        assert row["label"] == ("unknown" if want.confidence < 0.9 else want.label)
    assert_user_error(run_imgrec("predict", model, photos[0], "--min-confidence", "1.5"), "below 1")


def test_jsonl_min_confidence(onnx_predictor, photos, tmp_path):
    out = tmp_path / "p.jsonl"
    onnx_predictor.predict_to_file(photos, out, "jsonl", min_confidence=0.999999)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record in records:
        top = record["top"][0]
        expected = "unknown" if top["probability"] < 0.999999 else top["class"]
        assert record["label"] == expected
    assert any(r["label"] == "unknown" for r in records)


# ---- inputs that are not plain image files -------------------------------------------------------
def _odd_folder(folder: Path) -> dict[str, str]:
    """A folder with two photos, a linked folder, a folder loop, and three entries that are not
    files: {name relative to the folder: the reason it is skipped, or '' if predicted}."""
    import os

    from imagegen import write_rgb

    write_rgb(folder / "a.png")
    write_rgb(folder / "sub" / "b.png")
    (folder / "sub" / "up").symlink_to(folder)  # a folder loop: walking it must end
    write_rgb(folder.parent / f"{folder.name}-elsewhere" / "c.png")
    (folder / "more").symlink_to(folder.parent / f"{folder.name}-elsewhere")  # followed
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "missing.jpg")
    os.mkfifo(folder / "pipe.png")
    return {
        "a.png": "",
        "dangling.jpg": "a broken symbolic link",
        "loop.jpg": "a symbolic link loop",
        "more/c.png": "",
        "pipe.png": "a named pipe (FIFO), not a file",
        "sub/b.png": "",
    }


def test_odd_entries_are_listed_not_dropped(tmp_path):
    """Finding: symlink loops, dangling links and FIFOs inside a folder were neither predicted
    nor reported, and a loop or dangling link named on the command line aborted the run."""
    from imgrec.data.inputs import expand_inputs

    folder = tmp_path / "odd"
    expected = _odd_folder(folder)
    listed = expand_inputs([folder])
    assert [p.relative_to(folder).as_posix() for p in listed] == sorted(expected)
    named = [folder / "loop.jpg", folder / "dangling.jpg", folder / "pipe.png"]
    assert expand_inputs(named) == named
    assert expand_inputs([f"{folder}/*.jpg"]) == [folder / "dangling.jpg", folder / "loop.jpg"]


def test_cli_reports_every_odd_entry_and_exits_5(model, tmp_path):
    """Every input is a row: predicted, or skipped with its reason (stderr names it too); the
    summary counts the skipped files and the exit code says some were (5, in the README)."""
    folder = tmp_path / "odd"
    expected = _odd_folder(folder)
    out = tmp_path / "p.csv"
    result = run_imgrec("predict", model, folder, "-f", "csv", "-o", out, timeout=180)
    assert result.returncode == 5, result.stderr
    rows = {Path(r["path"]).relative_to(folder).as_posix(): r for r in read_csv(out)}
    assert sorted(rows) == sorted(expected)
    for name, reason in expected.items():
        assert rows[name]["skipped"].startswith(reason) if reason else rows[name]["class1"]
        if reason:
            assert name in result.stderr
    assert "3 skipped" in result.stdout
    table = run_imgrec("predict", model, folder / "loop.jpg", folder / "a.png", timeout=180)
    assert table.returncode == 5 and "a symbolic link loop" in table.stderr
