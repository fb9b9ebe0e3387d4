"""Drift detection on real photos with a real model: `imgrec drift` must notice what changes in
production (darker images, blur, heavy JPEG compression, a kind of object it never saw) and
must not cry wolf on two halves of the same data.

One model is trained per module (head only, seconds) on 30 + 30 photos of the bundled
ants-vs-bees sample; its held-out images (the sample's 25 + 25 val/ photos, given as val/ and
test/ splits) become the reference stored in the model file. The other 30 + 30 training
photos, never trained on, are the "current" images: as they are, and transformed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter
from runhelpers import CLASSES, copy_files, run_imgrec, sample_files

from imgrec.errors import ImgrecError
from imgrec.models import signature
from imgrec.monitor.detect import detect_drift
from imgrec.monitor.drift import compare_windows
from imgrec.monitor.image_window import window_from_images
from imgrec.monitor.log_window import window_from_log
from imgrec.monitor.window import MIN_IMAGES, SIGNATURE_DIMS, Window
from imgrec.prediction_log.db import open_log_db
from imgrec.prediction_log.schema import model_id
from imgrec.runs.train import train_run
from imgrec.train import TrainConfig

pytestmark = pytest.mark.slow

DAY = 86400.0
NOV_1 = 1793491200.0  # 2026-11-01T00:00:00Z


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("drift")
    for label in CLASSES:
        copy_files(sample_files("train", label, 30), base / "data" / "train" / label)
        copy_files(sample_files("val", label, 12), base / "data" / "val" / label)
        copy_files(sample_files("val", label, 13, skip=12), base / "data" / "test" / label)
        copy_files(sample_files("train", label, 30, skip=30), base / "holdout" / label)
    run = train_run(base / "data", base / "run", TrainConfig(epochs=0), progress=False)
    clf = run.classifier
    predictor = clf.batch_predictor("auto")  # the engine training built for the reference
    stored = clf.metadata["monitor"]["reference"]
    return SimpleNamespace(
        base=base,
        model=run.model_path,
        clf=clf,
        predictor=predictor,
        stored=stored,
        reference=Window.from_metadata(stored, "model.imgrec"),
        windows={},
    )


def _holdout(setup) -> list[Path]:
    return sorted((setup.base / "holdout").rglob("*.jpg"))


def _transformed(setup, name: str, save) -> Path:
    """The held-out photos passed through `save(image, path)` into a folder of their own."""
    folder = setup.base / name
    if not folder.exists():
        for path in _holdout(setup):
            target = folder / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            save(Image.open(path).convert("RGB"), target)
    return folder


def _window(setup, name: str, save=None) -> Window:
    if name not in setup.windows:
        folder = setup.base / "holdout" if save is None else _transformed(setup, name, save)
        setup.windows[name] = window_from_images(setup.predictor, folder)
    return setup.windows[name]


def _shifted(result) -> set[str]:
    return {t.name for t in result.shifted}


def test_the_model_file_carries_its_held_out_images_as_reference(setup):
    ref = setup.reference
    assert len(ref) == 50 and ref.kind == "reference"
    assert set(ref.labels) <= set(CLASSES)
    assert ref.signatures.shape == (50, 32) and np.isfinite(ref.signatures).all()
    assert np.isfinite(ref.properties).all() and (ref.properties[:, 3:] > 0).all()
    # ten of the same images, listed in a CSV and described afresh, are in the summary
    # (float16 aside)
    listing = setup.base / "some-val.csv"
    held_out = [*(setup.base / "data" / "val").rglob("*.jpg")]
    picked = sorted(held_out + [*(setup.base / "data" / "test").rglob("*.jpg")])[::5]
    listing.write_text("path\n" + "".join(f"{p.relative_to(setup.base)}\n" for p in picked))
    fresh = window_from_images(setup.predictor, listing)
    assert len(fresh) == 10
    scale = np.abs(ref.signatures).max()
    for i in range(len(fresh)):
        distances = np.abs(ref.signatures - fresh.signatures[i]).max(axis=1)
        j = int(np.argmin(distances))
        assert distances[j] < 2e-3 * scale
        assert ref.labels[j] == fresh.labels[i]
        assert abs(ref.confidence[j] - fresh.confidence[i]) < 2e-3
        np.testing.assert_allclose(ref.properties[j], fresh.properties[i], rtol=2e-3, atol=1e-3)
    # compact: well under 200 bytes of JSON per image
    assert len(json.dumps(setup.stored)) < 200 * len(ref)


def test_darker_images_exit_3_with_a_report(setup, tmp_path):
    dark = _transformed(
        setup, "dark", lambda im, p: ImageEnhance.Brightness(im).enhance(0.5).save(p, quality=90)
    )
    result = run_imgrec("drift", setup.model, "--current", dark, "--out", tmp_path / "report")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Drift: the images are" in result.stdout and "darker" in result.stdout
    document = json.loads((tmp_path / "report" / "drift.json").read_text())
    assert document["verdict"] == "drift" and document["drift"] is True
    tests = {t["name"]: t for t in document["tests"]}
    assert tests["brightness"]["shifted"] and tests["brightness"]["p_adjusted"] < 1e-6
    assert tests["brightness"]["effect_size"] == "large"
    assert document["reference"]["images"] == 50 and document["current"]["images"] == 60
    html = (tmp_path / "report" / "drift.html").read_text()
    assert document["headline"].replace("'", "&#39;") in html
    assert html.count("data:image/png;base64,") == 4  # confidence, properties, classes, MMD
    assert "imgrec retrain" in html and "<script" not in html


def test_blur_is_detected(setup):
    result = compare_windows(setup.reference, _blurred(setup))
    assert result.drift and "sharpness" in _shifted(result)
    assert "softer" in result.headline


def test_low_jpeg_quality_is_detected(setup):
    blocky = _window(setup, "jpeg5", lambda im, p: im.save(p, quality=5))
    result = compare_windows(setup.reference, blocky)
    assert result.drift, [t.line for t in result.tests]
    # the model itself notices: its features move and it becomes less sure
    assert {"embedding", "confidence"} & _shifted(result)


def _unseen_photos(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Photos of things that are neither ants nor bees, one per (width, height) in `sizes`:
    crops of scikit-image's bundled real photographs (an astronaut, a cat, a cup of coffee, a
    rocket, a cameraman, a clock). A new kind of object reaching the model is the drift that
    hurts most; these are real photos (not drawings) of the same sizes as the sample's, so
    what gives them away is what they show, not how they were made."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    photos += [np.stack([data.camera()] * 3, -1), np.stack([data.clock()] * 3, -1)]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (width, height) in enumerate(sizes):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        scale = rng.uniform(0.6, 0.95) * min(w / width, h / height)
        cw, ch = int(width * scale), int(height * scale)
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(photo[top : top + ch, left : left + cw]).resize((width, height))
        paths.append(folder / f"unseen_{i:02d}.jpg")
        crop.save(paths[-1], quality=90)
    return paths


def _concat(windows: list[Window], source: str) -> Window:
    return Window(
        labels=np.concatenate([w.labels for w in windows]),
        confidence=np.concatenate([w.confidence for w in windows]),
        properties=np.concatenate([w.properties for w in windows]),
        signatures=np.concatenate([w.signatures for w in windows]),
        source=source,
        kind="images",
    )


def test_a_new_kind_of_object_mixed_in_is_detected(setup):
    ants_and_bees = _window(setup, "clean").take(range(0, 60, 2))  # 30 ants and bees ...
    sizes = [Image.open(p).size for p in _holdout(setup)[1::2]]
    unseen = _unseen_photos(setup.base / "unseen", sizes)  # ... and 30 photos of other things
    other = window_from_images(setup.predictor, setup.base / "unseen")
    assert len(other) == len(unseen)
    result = compare_windows(setup.reference, _concat([ants_and_bees, other], "mixed"))
    assert result.drift and "embedding" in _shifted(result), [t.line for t in result.tests]


def test_halves_of_the_same_data_are_not_flagged(setup):
    clean = _window(setup, "clean")
    assert not compare_windows(setup.reference, clean).drift
    # 110 unseen photos in one window (float16-rounded alike), split at random 40 times
    both = [Window.from_metadata(w.to_metadata(), "x") for w in (setup.reference, clean)]
    pool = _concat(both, "pool")
    alarms = 0
    for trial in range(40):
        order = np.random.default_rng(trial).permutation(len(pool))
        half = len(pool) // 2
        result = compare_windows(pool.take(order[:half]), pool.take(order[half:]), seed=trial)
        alarms += result.drift
    assert alarms <= 2, f"{alarms} false alarms in 40 trials"


def _write_log(path: Path, rows: list[tuple], signatures: bool = True) -> sqlite3.Connection:
    """A prediction log filled with chosen rows; the connection stays open, as a running
    server's would."""
    connection = open_log_db(path)  # the writer's own schema and settings
    sql = (
        "INSERT INTO predictions (ts, model_id, model_version, source, filename, sha256, width, "
        "height, brightness, contrast, sharpness, label, confidence, top_k, signature, "
        "image_path) VALUES (?, ?, ?, 'serve', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
    )
    with connection:
        connection.executemany(sql, [r[:13] + ((r[13] if signatures else None),) for r in rows])
    return connection


def _log_rows(window: Window, model: str, start: float, per_day: int) -> list[tuple]:
    rows = []
    for i in range(len(window)):
        label, confidence = str(window.labels[i]), float(window.confidence[i])
        top_k = json.dumps([[label, confidence], ["other", 1 - confidence]])
        b, c, s, w, h = (float(v) for v in window.properties[i])
        blob = window.signatures[i].astype("<f2").tobytes()
        ts = start + (i // per_day) * DAY + 60.0 * (i % per_day)
        rows.append(
            (ts, model, "2026-11-01T00:00:00+00:00", f"{i}.jpg", f"{i:064x}", int(w), int(h),
             b, c, s, label, confidence, top_k, blob)
        )  # fmt: skip
    return rows


def test_the_prediction_log_is_read_by_time_and_model(setup, tmp_path):
    clean = _window(setup, "clean")
    own = model_id(setup.model)
    rows = _log_rows(clean, own, NOV_1, per_day=20)  # 20 a day on Nov 1, 2 and 3
    rows += _log_rows(clean, "0123456789abcdef", NOV_1, per_day=60)[:25]  # another model
    db = tmp_path / "predictions.db"
    writer = _write_log(db, rows)
    try:
        window = window_from_log(db, model=own)
        assert len(window) == 60 and window.kind == "log"
        np.testing.assert_array_equal(window.labels, clean.labels)
        np.testing.assert_allclose(window.signatures, clean.signatures, rtol=1e-3, atol=1e-2)
        assert len(window_from_log(db)) == 85  # every model
        # Nov 2 and 3: --until with a bare date includes that day
        result = run_imgrec(
            "drift", setup.model, "--current", db, "--since", "2026-11-02", "--until",
            "2026-11-03", "--out", tmp_path / "report",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        document = json.loads((tmp_path / "report" / "drift.json").read_text())
        assert document["verdict"] != "drift"
        assert document["current"]["images"] == 40
        assert document["current"]["time_range"][0].startswith("2026-11-02T00:00")
        assert document["current"]["time_basis"] == "prediction time"
    finally:
        writer.close()
    with pytest.raises(ImgrecError, match="--all-models"):
        window_from_log(db, model="fedcba9876543210")


def _blurred(setup) -> Window:
    return _window(
        setup, "blur", lambda im, p: im.filter(ImageFilter.GaussianBlur(3)).save(p, quality=90)
    )


def test_a_log_without_signatures_still_gives_the_other_tests(setup, tmp_path):
    own = model_id(setup.model)
    _write_log(tmp_path / "p.db", _log_rows(_blurred(setup), own, NOV_1, 60), False).close()
    run = detect_drift(setup.model, tmp_path / "p.db")
    tests = {t.name: t for t in run.result.tests}
    assert tests["embedding"].skipped and "signatures" in tests["embedding"].skipped
    assert run.result.drift and "sharpness" in _shifted(run.result)


def test_after_calibration_the_stored_confidences_are_not_compared(setup, tmp_path):
    setup.clf.temperature = 2.0  # as `imgrec calibrate` leaves a model
    try:
        calibrated = setup.clf.save(tmp_path / "calibrated.imgrec")
    finally:
        setup.clf.temperature = 1.0
    rows = _log_rows(_window(setup, "clean"), model_id(calibrated), NOV_1, 60)
    _write_log(tmp_path / "p.db", rows).close()
    tests = {t.name: t for t in detect_drift(calibrated, tmp_path / "p.db").result.tests}
    assert "calibrated" in tests["confidence"].skipped
    assert all(t.skipped is None for name, t in tests.items() if name != "confidence")


def _not_a_log(path: Path) -> Path:
    path.write_text("id,label\n1,ants\n")
    return path


def _other_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE photos (id INTEGER)")
    connection.close()
    return path


def _newer_log(path: Path) -> Path:
    _write_log(path, []).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE log_info SET schema_version = 2")
    connection.close()
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_not_a_log, "not a SQLite file"),
        (_other_sqlite, "not an imgrec prediction log"),
        (_newer_log, "schema version 2"),
    ],
)
def test_a_file_that_is_not_a_readable_log_is_refused(setup, tmp_path, make, fragment):
    with pytest.raises(ImgrecError, match=fragment):
        detect_drift(setup.model, make(tmp_path / "predictions.db"))


def test_bad_input_ends_in_one_line_without_a_traceback(setup, tmp_path):
    result = run_imgrec("drift", setup.model, "--current", _newer_log(tmp_path / "p.db"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "schema version 2" in lines[0], result.stderr
    bad_date = run_imgrec("drift", setup.model, "--current", tmp_path, "--since", "tuesday")
    assert bad_date.returncode == 2 and "2026-11-01" in bad_date.stderr


def test_the_log_reader_expects_the_engines_signature_width():
    assert SIGNATURE_DIMS == signature.SIGNATURE_DIMS


def test_too_few_images_or_no_reference_are_explained(setup, tmp_path):
    with pytest.raises(ImgrecError, match=f"at least {MIN_IMAGES}"):
        compare_windows(setup.reference, _window(setup, "clean").take(range(12)))
    with pytest.raises(ImgrecError, match="--since and --until select predictions of a log"):
        detect_drift(setup.model, setup.base / "holdout", since=NOV_1)
    with pytest.raises(ImgrecError, match="no such file or folder"):
        detect_drift(setup.model, tmp_path / "missing")
    stored = setup.clf.metadata.pop("monitor")
    try:
        bare = setup.clf.save(tmp_path / "old.imgrec")  # as an older imgrec wrote them
    finally:
        setup.clf.metadata["monitor"] = stored
    with pytest.raises(ImgrecError, match="carries no reference"):
        detect_drift(bare, setup.base / "holdout")
