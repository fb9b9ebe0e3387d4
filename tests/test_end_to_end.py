"""Whole runs with the real model on CPU: data layouts, odd files, Ctrl-C / kill and resume, and
the Python API exactly as the README shows it.

Datasets are a handful of photos from the bundled ants-vs-bees sample plus generated odd files
(tests/imagegen.py), so each training takes seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from imagegen import GOOD_KINDS, write_csv, write_kind
from runhelpers import (
    CLASSES,
    copy_files,
    epochs_by_phase,
    fast_flags,
    make_class_dataset,
    make_split_dataset,
    read_csv,
    run_imgrec,
    sample_files,
    signal_when,
    squash,
    start_imgrec,
)

from imgrec import ImageClassifier, load_dataset
from imgrec.api import Prediction

pytestmark = pytest.mark.slow

# Files that must be skipped, with the words their reason must contain.
UNREADABLE = {
    "dir_named_jpg": "directory",
    "zero_bytes": "zero bytes",
    "text_as_png": "not an image",
}


def _put_in_split(place, source: Path, ratios, wanted: str, neighbours: list[str]) -> Path:
    """Write a file with `place(name)` under a name that imgrec's own seeded split puts into
    `wanted`. The split shuffles each class's files sorted by name, so a name that sorts next
    to each of the class's other files (`neighbours`) in turn reaches every position."""
    stems = sorted(Path(n).stem for n in neighbours)
    for name in ["0-broken", *(f"{stem}-broken" for stem in stems), "~broken"]:
        path = place(f"{name}.jpg")
        train, val, test = load_dataset(source).split(*ratios, seed=0)
        splits = {"train": train, "val": val, "test": test}
        if any(s.path.name == path.name for s in splits[wanted].samples):
            return path
        path.unlink()
    raise AssertionError(f"no file name puts the broken photo into the {wanted} split")


def _rows_by_name(csv_path: Path) -> dict[str, dict[str, str]]:
    return {Path(r["path"]).name: r for r in read_csv(csv_path)}


def _assert_each_epoch_once(history: dict[str, list[int]], finetune_epochs: int) -> None:
    assert history.get("finetune") == list(range(1, finetune_epochs + 1)), history
    head = history.get("head", [])
    assert head == list(range(1, len(head) + 1)), f"head epochs repeated or lost: {head}"


# ---- a folder per class, --split 60/20/20, odd-but-valid and unreadable files -----------------
@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("odd")
    data = make_class_dataset(base / "data", n=8)
    good = {kind: write_kind(data / CLASSES[i % 2], kind) for i, kind in enumerate(GOOD_KINDS)}
    bad = {kind: write_kind(data / "bees", kind) for kind in UNREADABLE}
    truncated = _put_in_split(
        lambda name: write_kind(data / "ants", "truncated_jpeg").rename(data / "ants" / name),
        data,
        (0.6, 0.2, 0.2),
        "train",
        [p.name for p in (data / "ants").iterdir()],
    )
    run = base / "run"
    result = run_imgrec("train", data, "--out", run, "--split", "60/20/20", *fast_flags(1))
    return SimpleNamespace(
        data=data, run=run, result=result, good=good, bad=bad, truncated=truncated
    )


def test_folder_per_class_with_split_trains(odd_run):
    r = odd_run.result
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    for name in ("model.imgrec", "report.html", "metrics.json", "history.csv", "config.json"):
        assert (odd_run.run / name).is_file(), name
    rows = read_csv(odd_run.run / "split.csv")
    for label in CLASSES:
        splits = {row["split"] for row in rows if row["label"] == label}
        assert splits == {"train", "val", "test"}, f"{label}: {splits}"
    for row in rows:  # relative to DATA, pointing at the real files
        assert (odd_run.data / row["path"]).is_file(), row
    # the test split is what gets reported
    metrics = json.loads((odd_run.run / "metrics.json").read_text())
    assert metrics["n"] == sum(row["split"] == "test" for row in rows)


def test_unusual_but_valid_images_are_trained_on(odd_run):
    assert odd_run.result.returncode == 0, odd_run.result.stderr
    split_file = odd_run.run / "split.csv"  # paths relative to its own folder
    listed = {(split_file.parent / row["path"]).resolve() for row in read_csv(split_file)}
    skipped = _rows_by_name(odd_run.run / "skipped.csv")
    for kind, path in odd_run.good.items():
        assert path.resolve() in listed, f"{kind} ({path}) is not in split.csv"
        assert path.name not in skipped, f"{kind} was skipped: {skipped[path.name]['reason']}"


def test_unreadable_files_are_skipped_and_listed(odd_run):
    assert odd_run.result.returncode == 0, odd_run.result.stderr
    skipped = _rows_by_name(odd_run.run / "skipped.csv")
    expected = {p.name: UNREADABLE[k] for k, p in odd_run.bad.items()}
    expected[odd_run.truncated.name] = "truncated"
    assert set(skipped) == set(expected), skipped
    for name, words in expected.items():
        assert words in skipped[name]["reason"], skipped[name]
        assert (
            Path(skipped[name]["path"]).resolve()
            == (
                odd_run.truncated
                if name == odd_run.truncated.name
                else odd_run.data / "bees" / name
            ).resolve()
        )


# ---- a CSV source: path,label with paths relative to the CSV ----------------------------------
@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("csvsrc")
    photos = base / "photos"  # one flat folder: the labels come only from the CSV
    rows = []
    for label in CLASSES:
        for f in copy_files(sample_files("train", label, 8, skip=8), photos):
            rows.append((f"photos/{f.name}", label))
    csv_path = write_csv(base / "labels.csv", rows)
    # a photo that cannot be decoded, in the test split: it must still end up in skipped.csv

    def place(name: str) -> Path:
        write_csv(csv_path, [*rows, (f"photos/{name}", "bees")])
        return write_kind(photos, "truncated_jpeg").rename(photos / name)

    bees = [Path(path).name for path, label in rows if label == "bees"]
    broken = _put_in_split(place, csv_path, (0.7, 0.15, 0.15), "test", bees)
    run = base / "run"
    result = run_imgrec("train", csv_path, "--out", run, *fast_flags(0))
    return SimpleNamespace(csv=csv_path, rows=rows, broken=broken, run=run, result=result)


def test_csv_source_trains(csv_run):
    r = csv_run.result
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert (csv_run.run / "model.imgrec").is_file()
    assert (csv_run.run / "report.html").is_file()
    config = json.loads((csv_run.run / "config.json").read_text())
    assert Path(config["source"]) == csv_run.csv.resolve()
    split = read_csv(csv_run.run / "split.csv")  # paths relative to split.csv's folder
    listed = {((csv_run.run / row["path"]).resolve(), row["label"]) for row in split}
    assert listed == {
        *(((csv_run.csv.parent / path).resolve(), label) for path, label in csv_run.rows),
        (csv_run.broken.resolve(), "bees"),
    }
    assert {row["split"] for row in split} == {"train", "val", "test"}
    history = epochs_by_phase(csv_run.run / "history.csv")
    assert "finetune" not in history and history.get("head"), history  # --epochs 0: head only
    metrics = json.loads((csv_run.run / "metrics.json").read_text())
    assert metrics["n"] == sum(row["split"] == "test" for row in split) - 1  # minus the broken


def test_undecodable_test_image_is_listed_in_skipped_csv(csv_run):
    assert csv_run.result.returncode == 0, csv_run.result.stderr
    skipped_csv = csv_run.run / "skipped.csv"
    assert skipped_csv.is_file(), "a test image could not be read, but there is no skipped.csv"
    skipped = _rows_by_name(skipped_csv)
    assert csv_run.broken.name in skipped, skipped
    assert "truncated" in skipped[csv_run.broken.name]["reason"]


# ---- interrupted training and resume ------------------------------------------------------
def _start_training(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """Start `imgrec train` (3 fine-tuning epochs) on 4 + 2 photos per class; returns the
    process, the run folder and the file its stderr goes to."""
    data = make_split_dataset(tmp_path / "data", n_train=4, n_val=2)
    run = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    process = start_imgrec(
        "train", data, "--out", run, "--epochs", "3", "--patience", "5", "-q", log=log
    )
    return process, run, log


def _finetune_rows(run: Path) -> int:
    return epochs_by_phase(run / "checkpoints" / "history.csv").get("finetune", []).count(1)


def _epoch_one_checkpointed(run: Path) -> bool:
    """Finetune epoch 1 is in history.csv and Lightning's last.ckpt for it is on disk."""
    return _finetune_rows(run) >= 1 and (run / "checkpoints" / "last.ckpt").exists()


def _resume_and_check(run: Path) -> None:
    result = run_imgrec("train", "--resume", run, "-q")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert (run / "model.imgrec").is_file()
    assert (run / "report.html").is_file()
    _assert_each_epoch_once(epochs_by_phase(run / "history.csv"), finetune_epochs=3)


def test_ctrl_c_then_resume(tmp_path):
    """Ctrl-C during finetune epoch 2 (epoch 1 fully saved, checkpoint included): exit 130
    with the resume command; the resumed run does epochs 2 and 3 and nothing twice."""
    process, run, log = _start_training(tmp_path)
    code = signal_when(process, lambda: _epoch_one_checkpointed(run), "finetune epoch 1", log)
    stderr = log.read_text(errors="replace")
    assert code == 130, stderr  # Ctrl-C landed in epoch 2
    assert "Traceback" not in stderr
    assert squash(f"imgrec train --resume {run}") in squash(stderr), stderr
    assert not (run / "model.imgrec").exists(), "the run finished before the interrupt"
    assert epochs_by_phase(run / "checkpoints" / "history.csv")["finetune"] == [1]
    _resume_and_check(run)


def test_kill_right_after_an_epoch_then_resume(tmp_path):
    """SIGKILL the moment finetune epoch 1 shows up in history.csv, then resume.

    That moment is the dangerous one: the epoch's history row (and best weights) are on disk,
    Lightning's last.ckpt for it may not be yet. Whether the kill lands a few milliseconds
    before or after that checkpoint write is luck, so when it landed after, the test removes
    last.ckpt: the state is then exactly what a kill a moment earlier leaves, every time.
    """
    process, run, log = _start_training(tmp_path)
    code = signal_when(
        process, lambda: _finetune_rows(run) >= 1, "finetune epoch 1", log, sig=signal.SIGKILL
    )
    assert code == -signal.SIGKILL
    assert not (run / "model.imgrec").exists(), "the run finished before the kill"
    assert epochs_by_phase(run / "checkpoints" / "history.csv")["finetune"] == [1]
    (run / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
    _resume_and_check(run)


# ---- the Python API, as in README.md ------------------------------------------------------
@pytest.fixture(scope="module")
def api_fit(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    photos = make_class_dataset(base / "photos", n=10)
    ds = load_dataset(photos)
    train, val, test = ds.split(0.7, 0.15, 0.15, seed=0)
    clf = ImageClassifier("efficientnet_lite0", epochs=1).fit(train, val)
    return SimpleNamespace(base=base, ds=ds, train=train, val=val, test=test, clf=clf)


def test_python_api_as_in_the_readme(api_fit, tmp_path):
    clf, test = api_fit.clf, api_fit.test
    assert len(api_fit.ds) == 20
    assert len(api_fit.train) + len(api_fit.val) + len(test) == 20
    assert len(test) > 0 and len(api_fit.val) > 0

    result = clf.evaluate(test)
    report = result.save_report(tmp_path / "report.html")
    assert Path(report).is_file() and Path(report).stat().st_size > 0
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert result.metrics["n"] == len(test)

    images = [str(s.path) for s in test.samples]
    prediction = clf.predict([images[0]])[0]
    assert isinstance(prediction, Prediction)
    assert clf.classes == list(CLASSES)
    assert prediction.label in clf.classes
    assert prediction.path == images[0]

    saved = clf.save(tmp_path / "model.imgrec")
    assert Path(saved).is_file()
    loaded = ImageClassifier.load(tmp_path / "model.imgrec")
    assert loaded.classes == clf.classes
    before = clf.predict(images, top_k=2)
    after = loaded.predict(images, top_k=2)
    assert [p.path for p in after] == [p.path for p in before] == images
    for b, a in zip(before, after, strict=True):
        assert a.classes == b.classes
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5, rtol=0)


def test_model_file_with_an_unknown_setting_still_loads(api_fit, tmp_path):
    """Model files outlive code: a file whose config holds a setting this version does not
    have (written by an older or newer imgrec) must still load and predict the same."""
    from imgrec.bundle.format import load_bundle, save_bundle

    path = api_fit.clf.save(tmp_path / "model.imgrec")
    state, metadata = load_bundle(path)
    metadata["config"]["a_setting_from_another_version"] = 1
    save_bundle(tmp_path / "other.imgrec", state, metadata)
    other = ImageClassifier.load(tmp_path / "other.imgrec")
    image = [api_fit.test.samples[0].path]
    expected = api_fit.clf.predict_proba(image)[1]
    np.testing.assert_allclose(other.predict_proba(image)[1], expected, atol=1e-5, rtol=0)


def test_same_seed_gives_identical_predictions(api_fit):
    """Head-only fits (epochs=0) with the same seed are bit-for-bit the same model."""
    images = [s.path for s in api_fit.test.samples]
    runs = [
        ImageClassifier(epochs=0, seed=7).fit(api_fit.train, api_fit.val, progress=False)
        for _ in range(2)
    ]
    (paths_a, probs_a, _), (paths_b, probs_b, _) = (r.predict_proba(images) for r in runs)
    assert paths_a == paths_b
    assert probs_a.shape == (len(images), 2)
    assert np.array_equal(probs_a, probs_b)
    state_a, state_b = (r.network.state_dict() for r in runs)
    assert all(np.array_equal(state_a[k].numpy(), state_b[k].numpy()) for k in state_a)
