"""The `imgrec` command line, run as a real subprocess on real files.

One real training (module fixture, about half a minute on a 2-core CPU) produces the model
that the info / predict / evaluate tests use. Every user mistake must end with exit code 1 and
one line on stderr, never a traceback; usage errors exit 2.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from imagegen import BAD_KINDS, write_kind
from runhelpers import (
    CLASSES,
    COMMANDS,
    assert_usage_error,
    assert_user_error,
    copy_files,
    epochs_by_phase,
    fast_flags,
    make_class_dataset,
    make_split_dataset,
    read_csv,
    run_imgrec,
    sample_files,
    squash,
)

SKIP_REASONS = {kind: BAD_KINDS[kind] for kind in ("zero_bytes", "truncated_jpeg", "text_as_png")}


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`imgrec train DATA --out RUN` on a train/val layout: 8 + 4 photos per class."""
    base = tmp_path_factory.mktemp("trained")
    data = make_split_dataset(base / "data", n_train=8, n_val=4)
    run = base / "run"
    result = run_imgrec("train", data, "--out", run, *fast_flags(epochs=1))
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return SimpleNamespace(data=data, run=run, model=run / "model.imgrec", result=result)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Predict inputs: one file, a folder (with a sub-folder), a glob, and three bad files."""
    base = tmp_path_factory.mktemp("inputs")
    single = copy_files(sample_files("val", "ants", 1, skip=4), base)[0]
    folder = base / "folder"
    in_folder = copy_files(sample_files("val", "bees", 1, skip=4), folder)
    in_folder += copy_files(sample_files("val", "ants", 1, skip=5), folder / "sub")
    (folder / "notes.txt").write_text("not an image, and not named like one\n")
    globbed = copy_files(sample_files("val", "bees", 2, skip=5), base / "globbed")
    (base / "globbed" / "other.png").write_bytes(b"")  # a .png the *.jpg pattern must not match
    bad = {kind: write_kind(base / "bad", kind) for kind in SKIP_REASONS}
    return SimpleNamespace(
        base=base,
        args=[single, folder, str(base / "globbed" / "*.jpg")],
        good=[single, *in_folder, *globbed],
        bad=bad,
    )


def _same_files(paths, expected) -> bool:
    return sorted(Path(p).resolve() for p in paths) == sorted(Path(p).resolve() for p in expected)


# ---- help and usage -------------------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run_imgrec(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout
    assert "Usage" in result.stdout
    assert result.stderr.strip() == ""


def test_top_level_help_lists_every_command():
    result = run_imgrec("--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


def test_train_without_data_is_a_usage_error(tmp_path):
    result = run_imgrec("train", cwd=tmp_path)
    assert_usage_error(result, "DATA")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("split", ["1/2/3/4"])
def test_bad_split_is_a_usage_error(tmp_path, split):
    data = make_class_dataset(tmp_path / "data", n=3)
    result = run_imgrec("train", data, "--split", split, "--out", tmp_path / "run")
    assert_usage_error(result, "70/15/15")
    assert not (tmp_path / "run" / "config.json").exists()


def test_unknown_option_and_bad_number_are_usage_errors(tmp_path):
    assert_usage_error(run_imgrec("train", tmp_path, "--no-such-option"), "--no-such-option")
    assert_usage_error(run_imgrec("predict", tmp_path / "m.imgrec", "a.jpg", "--top-k", "two"))


# ---- train: what a run folder holds ---------------------------------------------------------
@pytest.mark.slow
def test_train_writes_a_complete_run_folder(trained):
    run = trained.run
    for name in (
        "model.imgrec",
        "report.html",
        "metrics.json",
        "history.csv",
        "split.csv",
        "config.json",
    ):
        assert (run / name).is_file(), f"{name} missing: {sorted(p.name for p in run.iterdir())}"
        assert (run / name).stat().st_size > 0, name
    plots = sorted((run / "plots").glob("*.png"))
    assert plots, "no plots/*.png"
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert not (run / "skipped.csv").exists(), "every file was readable"

    # stdout names the report and the model, each on its own line
    lines = trained.result.stdout.splitlines()
    assert f"report: {run / 'report.html'}" in lines, trained.result.stdout
    assert any(line.endswith(str(run / "model.imgrec")) for line in lines), trained.result.stdout
    assert "Traceback" not in trained.result.stderr

    # train/ and val/ only: val/ (4 + 4 photos) is scored as the test split, which chose
    # nothing; the validation split that chooses the best epoch is held out of train/
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 8
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["classes"] == list(CLASSES)
    assert sum(map(sum, metrics["confusion_matrix"])) == 8

    split = read_csv(run / "split.csv")
    counts = {s: sum(r["split"] == s for r in split) for s in ("train", "val", "test")}
    assert counts["test"] == 8 and counts["train"] + counts["val"] == 16, counts
    assert counts["val"] >= len(CLASSES), counts
    for row in split:  # paths are relative to split.csv's folder, as in any dataset CSV
        assert not Path(row["path"]).is_absolute()
        image = (run / row["path"]).resolve()
        assert image.is_file()
        folder = "val" if row["split"] == "test" else "train"  # test is val/; val comes from train/
        assert image.relative_to(trained.data.resolve()).parts[:2] == (folder, row["label"])

    history = epochs_by_phase(run / "history.csv")
    assert history.get("finetune") == [1], history
    assert history.get("head"), "the head phase left no history rows"

    config = json.loads((run / "config.json").read_text())
    assert config["epochs"] == 1
    assert Path(config["source"]) == trained.data.resolve()

    report = (run / "report.html").read_text(encoding="utf-8")
    assert report.lstrip().lower().startswith("<!doctype html")
    assert all(label in report for label in CLASSES)


@pytest.mark.slow
def test_train_refuses_an_existing_run_folder(trained):
    before = trained.model.stat().st_mtime_ns
    result = run_imgrec("train", trained.data, "--out", trained.run, *fast_flags())
    assert_user_error(result, "already holds a run", "--resume", "--exist-ok")
    assert trained.model.stat().st_mtime_ns == before, "the existing model was touched"


# ---- info -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_info_shows_classes_and_model(trained):
    result = run_imgrec("info", trained.model)
    assert result.returncode == 0, result.stderr
    assert "efficientnet_lite0" in result.stdout
    assert re.search(r"2: ants, bees", result.stdout), result.stdout


@pytest.mark.slow
def test_info_json_is_valid_json_with_the_metadata(trained):
    result = run_imgrec("info", trained.model, "--json")
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout)
    assert meta["classes"] == list(CLASSES)
    assert meta["model"] == "efficientnet_lite0"
    assert {"input_size", "resize_size", "mean", "std"} <= set(meta["preprocessing"])
    assert meta["metrics"]["split"] == "test"
    run_metrics = json.loads((trained.run / "metrics.json").read_text())
    assert meta["metrics"]["accuracy"] == pytest.approx(run_metrics["accuracy"])
    assert re.fullmatch(r"[0-9a-f]{64}", meta["data"]["fingerprint"]), meta["data"]
    split = read_csv(trained.run / "split.csv")
    assert meta["data"]["train_images"] == sum(r["split"] == "train" for r in split)
    assert meta["data"]["val_images"] == sum(r["split"] == "val" for r in split)
    assert meta["data"]["train_images"] + meta["data"]["val_images"] == 16
    assert "history" not in meta


# ---- predict --------------------------------------------------------------------------------
def _check_top2(top: list[dict]) -> None:
    assert len(top) == 2, top
    assert {t["class"] for t in top} == set(CLASSES)
    probs = [t["probability"] for t in top]
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) <= 1.0 + 1e-5
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)  # top-2 of a 2-class model is everything


@pytest.mark.slow
def test_predict_json_files_folders_globs_and_bad_files(trained, inputs):
    bad = list(inputs.bad.values())
    result = run_imgrec(
        "predict", trained.model, *inputs.args, *bad, "--top-k", "2", "--format", "json"
    )
    assert result.returncode == 5, result.stderr  # 5: some inputs were skipped
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)  # stdout is the JSON document and nothing else

    predictions = document["predictions"]
    assert _same_files([p["path"] for p in predictions], inputs.good)
    for p in predictions:
        _check_top2(p["top"])

    assert _same_files([s["path"] for s in document["skipped"]], bad)
    reasons = {Path(s["path"]).name: s["reason"] for s in document["skipped"]}
    for kind, path in inputs.bad.items():
        assert reasons[path.name] == SKIP_REASONS[kind]
        # and each bad file is named on stderr with its reason
        assert squash(f"{path}: {SKIP_REASONS[kind]}") in squash(result.stderr), result.stderr


@pytest.mark.slow
def test_predict_csv_to_a_file(trained, inputs, tmp_path):
    out = tmp_path / "out.csv"
    result = run_imgrec(
        "predict", trained.model, *inputs.args, "--top-k", "2", "--format", "csv", "-o", out
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    assert "wrote 5 predictions" in result.stdout
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,class1,prob1,class2,prob2,skipped"  # skipped: empty when predicted
    rows = read_csv(out)
    assert _same_files([r["path"] for r in rows], inputs.good)
    for r in rows:
        _check_top2(
            [
                {"class": r["class1"], "probability": float(r["prob1"])},
                {"class": r["class2"], "probability": float(r["prob2"])},
            ]
        )


def _first_column(table: str) -> list[str]:
    """The cells of a Rich table's first column; a cell folded over several lines is joined
    (the whitespace at the fold is lost, so compare the cells with `squash`)."""
    cells: list[str] = []
    for line in table.splitlines():
        if not line.startswith("│"):
            continue
        row = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells and not any(row[1:]):
            cells[-1] += row[0]
        else:
            cells.append(row[0])
    return cells


@pytest.mark.slow
def test_predict_output_is_the_old_name_of_out(trained, inputs, tmp_path):
    out = tmp_path / "old.csv"
    result = run_imgrec("predict", trained.model, *inputs.args, "-f", "csv", "--output", out)
    assert result.returncode == 0, result.stderr
    assert "wrote 5 predictions" in result.stdout and out.is_file()
    assert squash("--output is now called --out") in squash(result.stderr)


@pytest.mark.slow
def test_predict_table_is_the_default(trained, inputs, tmp_path):
    short = Path(inputs.good[0].name)  # relative to cwd
    deep = tmp_path / "a" / "rather" / "deeply" / "nested" / "folder" / "of" / "holiday photos"
    long = copy_files([inputs.good[0]], deep)[0]
    result = run_imgrec("predict", trained.model, short, long, "--top-k", "2", cwd=inputs.base)
    assert result.returncode == 0, result.stderr
    assert "top 1" in result.stdout and "top 2" in result.stdout
    assert len(re.findall(r"(?:ants|bees) \d+\.\d%", result.stdout)) == 4, result.stdout
    images = {squash(cell) for cell in _first_column(result.stdout)}  # where it folds is free
    assert squash(str(short)) in images, result.stdout
    # a long path (the usual case with absolute paths) must not be cut short either
    assert squash(str(long)) in images, f"the image path was truncated:\n{result.stdout}"


@pytest.mark.slow
def test_predict_only_unreadable_files_fails(trained, inputs):
    bad = [inputs.bad["zero_bytes"], inputs.bad["text_as_png"]]
    result = run_imgrec("predict", trained.model, *bad, "--format", "json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert squash("none of the inputs could be read") in squash(errors[0]), result.stderr
    for path in bad:  # the reasons are still given, one line per file
        assert squash(str(path)) in squash(result.stderr)
    assert len(lines) == len(bad) + 1, f"expected one line per file plus the error:\n{lines}"


@pytest.mark.slow
def test_predict_missing_path_fails_with_one_line(trained, tmp_path):
    result = run_imgrec("predict", trained.model, tmp_path / "nothere.jpg")
    assert_user_error(result, "no such file", "nothere.jpg")
    assert result.stdout.strip() == ""


# ---- evaluate -------------------------------------------------------------------------------
@pytest.mark.slow
def test_evaluate_writes_metrics_and_report(trained, tmp_path):
    out = tmp_path / "eval"
    result = run_imgrec("evaluate", trained.model, trained.data / "val", "--out", out)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    report = out / "report.html"
    assert report.is_file() and report.stat().st_size > 0
    assert sorted((out / "plots").glob("*.png")), "no plots"
    assert squash(f"report: {report}") in squash(result.stdout), result.stdout
    assert metrics["n"] == 8
    assert metrics["classes"] == list(CLASSES)
    # the same model on the same validation images as at the end of training: same numbers
    at_training = json.loads((trained.run / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(at_training["accuracy"])
    assert metrics["log_loss"] == pytest.approx(at_training["log_loss"], abs=1e-4)


@pytest.mark.slow
def test_evaluate_on_labels_the_model_does_not_know(trained, tmp_path):
    data = tmp_path / "other"
    copy_files(sample_files("val", "ants", 2), data / "ants")
    copy_files(sample_files("val", "bees", 2), data / "wasps")
    result = run_imgrec("evaluate", trained.model, data, "--out", tmp_path / "eval")
    assert_user_error(result, "wasps", "does not know")
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.slow
def test_evaluate_on_the_training_data_scores_only_what_the_run_held_out(trained, tmp_path):
    split = read_csv(trained.run / "split.csv")
    held_out = [r for r in split if r["split"] == "test"]
    assert held_out and len(held_out) < len(split)
    result = run_imgrec("evaluate", trained.model, trained.data, "--out", tmp_path / "held")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "held" / "metrics.json").read_text())["n"] == len(held_out)
    assert squash("held out") in squash(result.stderr)
    report = (tmp_path / "held" / "report.html").read_text()
    assert "images scored" in report and "held out" in report

    every = run_imgrec(
        "evaluate", trained.model, trained.data, "--include-training", "--out", tmp_path / "all"
    )
    assert every.returncode == 0, every.stderr
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["n"] == len(split)
    assert squash("training images included") in squash(every.stderr)
    assert "overstate" in (tmp_path / "all" / "report.html").read_text()


# ---- bad input to train ---------------------------------------------------------------------
def _one_image_class(root: Path) -> Path:
    copy_files(sample_files("train", "ants", 3), root / "ants")
    copy_files(sample_files("train", "bees", 1), root / "bees")
    return root


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda p: p / "nothere", ["does not exist", "nothere"]),
        (lambda p: p.mkdir() or p, ["No images found"]),
        (
            lambda p: copy_files(sample_files("train", "ants", 3), p / "ants") and p,
            ["only one class", "'ants'"],
        ),
        (_one_image_class, ["'bees' (1 image)", "fewer than 2 images"]),
    ],
    ids=["missing", "empty-folder", "one-class", "one-image-class"],
)
def test_train_rejects_bad_data_with_one_line(tmp_path, make, fragments):
    data = make(tmp_path / "data")
    result = run_imgrec("train", data, "--out", tmp_path / "run", *fast_flags())
    assert_user_error(result, *fragments)
    assert not (tmp_path / "run" / "model.imgrec").exists()


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake") / "model.imgrec"
    path.write_bytes(random.Random(0).randbytes(4096))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("info", "{model}"),
        ("predict", "{model}", "{image}"),
        ("evaluate", "{model}", "{data}"),
    ],
    ids=["info", "predict", "evaluate"],
)
def test_a_file_that_is_not_a_model(fake_model, tmp_path, args):
    data = make_class_dataset(tmp_path / "data", n=2)
    image = next((data / "ants").iterdir())
    values = {"model": fake_model, "image": image, "data": data}
    result = run_imgrec(*(a.format(**values) for a in args))
    assert_user_error(result, "not an imgrec model file")


def test_a_folder_is_not_a_model(tmp_path):
    result = run_imgrec("info", tmp_path)
    assert_user_error(result, "is a folder")
