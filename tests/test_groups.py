"""Per-group evaluation: known numbers on a hand-built case, interval coverage on synthetic data,
small-group warnings, CSV attributes, and `imgrec evaluate --group-by` through the real CLI on
photos from the bundled sample with a made-up camera column."""

from __future__ import annotations

import json

import numpy as np
import pytest
from imagegen import write_csv
from runhelpers import (
    CLASSES,
    assert_user_error,
    copy_files,
    make_class_dataset,
    run_imgrec,
    sample_files,
)

from imgrec import ImageClassifier, ImgrecError, load_dataset
from imgrec.evaluate.calibration import expected_calibration_error
from imgrec.evaluate.groups import MISSING, _bootstrap, group_metrics, select_columns
from imgrec.evaluate.intervals import wilson_interval


def _probs(preds: list[int], confidence: list[float]) -> np.ndarray:
    """Two-class probabilities whose arg-max is `preds` with the given top probability."""
    p = np.empty((len(preds), 2))
    for i, (k, c) in enumerate(zip(preds, confidence, strict=True)):
        p[i, k], p[i, 1 - k] = c, 1 - c
    return p


# ---- numbers ---------------------------------------------------------------------------------
def test_group_metrics_on_a_hand_built_case():
    # camera a: 4 images, 3 right (ants 2/2, bees 1/2); b: 3 images, 1 right (ants 0/1,
    # bees 1/2); one image without a camera.
    targets = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    preds = [0, 0, 1, 0, 1, 1, 0, 0]
    conf = [0.9, 0.8, 0.7, 0.6, 0.9, 0.55, 0.95, 0.6]
    probs = _probs(preds, conf)
    cameras = ["a", "a", "a", "a", "b", "b", "b", "  "]
    out = group_metrics(probs, targets, CLASSES, {"camera": cameras}, resamples=300, seed=1)
    column = out["columns"]["camera"]
    a, b = column["groups"]["a"], column["groups"]["b"]
    assert list(column["groups"]) == ["a", "b", MISSING]
    assert (a["n"], b["n"], column["missing"]) == (4, 3, 1)
    assert a["accuracy"] == pytest.approx(0.75) and b["accuracy"] == pytest.approx(1 / 3)
    assert a["recall"] == {"ants": 1.0, "bees": 0.5}
    assert b["recall"] == pytest.approx({"ants": 0.0, "bees": 0.5})
    assert a["balanced_accuracy"] == pytest.approx(0.75)
    assert b["balanced_accuracy"] == pytest.approx(0.25)
    assert a["support"] == {"ants": 2, "bees": 2}
    assert a["ece"] == pytest.approx(expected_calibration_error(probs[:4], targets[:4]))
    for g in (a, b):
        low, high = g["accuracy_ci"]
        assert 0 <= low <= g["accuracy"] <= high <= 1
    gap = column["gaps"]["accuracy"]
    assert (gap["best"], gap["worst"]) == ("a", "b")
    assert gap["gap"] == pytest.approx(0.75 - 1 / 3)
    assert gap["intervals_overlap"] is True  # 4 and 3 images: nothing can be told apart
    ants = column["gaps"]["recall"]["ants"]
    assert (ants["best"], ants["worst"], ants["gap"]) == ("a", "b", 1.0)
    assert column["gaps"]["recall"]["bees"]["gap"] == 0.0
    # the (missing) group is reported and left out of the gaps, with a sentence saying so
    assert column["groups"][MISSING]["n"] == 1
    assert any("1 image has no value" in w and MISSING in w for w in out["warnings"])
    json.dumps(out)  # plain JSON types only


def test_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(3)
    n, resamples = 60, 25
    targets = rng.integers(0, 3, n)
    probs = rng.dirichlet([1, 1, 1], n)
    correct = probs.argmax(1) == targets
    draws = _bootstrap(
        correct, targets, probs.max(1), 3, np.random.default_rng(7), resamples, bins=15
    )
    indices = np.random.default_rng(7).integers(0, n, size=(resamples, n))
    for r, idx in enumerate(indices):
        t, p = targets[idx], probs[idx]
        assert draws["accuracy"][r] == pytest.approx(correct[idx].mean())
        assert draws["ece"][r] == pytest.approx(expected_calibration_error(p, t))
        recalls = [correct[idx][t == c].mean() for c in range(3) if (t == c).any()]
        assert draws["balanced_accuracy"][r] == pytest.approx(np.mean(recalls))


def test_intervals_cover_the_truth_on_synthetic_data():
    """A model right 80% of the time, seen through 150-image test sets: the 95% intervals
    must contain 0.8 in about 95 of 100 repeats (bootstrap and Wilson alike)."""
    rng = np.random.default_rng(0)
    truth, n, repeats = 0.8, 150, 80
    boot_hits = wilson_hits = 0
    for seed in range(repeats):
        targets = rng.integers(0, 2, n)
        right = rng.random(n) < truth
        preds = np.where(right, targets, 1 - targets)
        probs = _probs(list(preds), list(rng.uniform(0.5, 1.0, n)))
        g = group_metrics(probs, targets, CLASSES, {"site": ["x"] * n}, resamples=400, seed=seed)
        low, high = g["columns"]["site"]["groups"]["x"]["accuracy_ci"]
        boot_hits += low <= truth <= high
        w_low, w_high = wilson_interval(int(right.sum()), n)
        wilson_hits += w_low <= truth <= w_high
    assert boot_hits / repeats >= 0.86, boot_hits
    assert wilson_hits / repeats >= 0.86, wilson_hits
    # and the intervals are not trivially wide
    assert high - low < 0.2


def test_a_clear_gap_is_told_apart_from_chance():
    rng = np.random.default_rng(1)
    n = 400
    targets = rng.integers(0, 2, n)
    site = np.array(["good"] * (n // 2) + ["bad"] * (n // 2))
    right = np.where(site == "good", rng.random(n) < 0.95, rng.random(n) < 0.6)
    probs = _probs(list(np.where(right, targets, 1 - targets)), [0.9] * n)
    g = group_metrics(probs, targets, CLASSES, {"site": list(site)})["columns"]["site"]
    gap = g["gaps"]["accuracy"]
    assert (gap["best"], gap["worst"]) == ("good", "bad")
    assert gap["intervals_overlap"] is False
    assert gap["gap_ci"][0] > 0.2


def test_small_groups_are_flagged_in_words():
    targets = np.array([0] * 40 + [1] * 40 + [0] * 3 + [1] * 9)
    probs = _probs(list(targets), [0.9] * len(targets))
    camera = ["big"] * 80 + ["small"] * 12
    out = group_metrics(probs, targets, CLASSES, {"camera": camera}, resamples=100)
    text = "\n".join(out["warnings"])
    assert "camera = small: only 12 images, too few to judge (at least 30" in text
    assert "only 3 images of class 'ants' (fewer than 10)" in text
    assert "only 9 images of class 'bees'" in text
    assert "camera = big" not in text


def test_seeded_intervals_repeat():
    rng = np.random.default_rng(2)
    targets = rng.integers(0, 2, 50)
    probs = rng.dirichlet([1, 1], 50)
    cols = {"c": list(rng.choice(["p", "q"], 50))}
    first = group_metrics(probs, targets, CLASSES, cols, seed=5)
    assert first == group_metrics(probs, targets, CLASSES, cols, seed=5)
    other = group_metrics(probs, targets, CLASSES, cols, seed=6)
    assert other["columns"]["c"]["groups"]["p"]["accuracy_ci"] != pytest.approx(
        first["columns"]["c"]["groups"]["p"]["accuracy_ci"]
    )


def test_column_selection_explains_what_is_wrong():
    assert select_columns(["Camera", "site"], ["camera", " site "], True) == ["Camera", "site"]
    with pytest.raises(ImgrecError, match="no column 'lens'; the available columns are: Camera"):
        select_columns(["Camera"], ["lens"], True)
    with pytest.raises(ImgrecError, match="needs a CSV dataset"):
        select_columns([], ["camera"], False)
    with pytest.raises(ImgrecError, match="no columns besides path,label,split"):
        select_columns([], ["camera"], True)


# ---- data and CLI ------------------------------------------------------------------------------
def test_csv_extra_columns_become_attributes(tmp_path):
    photos = copy_files(sample_files("train", "ants", 2), tmp_path / "p")
    csv_path = write_csv(
        tmp_path / "d.csv",
        [
            (f"p/{photos[0].name}", "ants", "train", "phone"),
            (f"p/{photos[1].name}", "ants", "", ""),
        ],
        header=("path", "label", "split", "Camera"),
    )
    ds = load_dataset(csv_path)
    assert ds.attribute_names() == ["Camera"]
    assert [dict(s.attributes) for s in ds.samples] == [{"Camera": "phone"}, {"Camera": ""}]
    assert ds.samples[0].split == "train" and ds.samples[1].split is None
    folder = load_dataset(make_class_dataset(tmp_path / "f", n=2))
    assert folder.attribute_names() == []
    assert folder.samples[0].attributes is folder.samples[1].attributes  # one shared empty map
    hash(folder.samples[0])  # still usable in sets and as keys


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """A head-only model (fastest real training) and a CSV of other sample photos with a
    made-up camera column: 12 ants and 12 bees, cameras phone / dslr, two without a camera."""
    base = tmp_path_factory.mktemp("groups")
    ds = load_dataset(make_class_dataset(base / "train", n=8))
    train, val, _ = ds.split(0.75, 0.25, 0.0, seed=0)
    clf = ImageClassifier("efficientnet_lite0", epochs=0).fit(train, val, progress=False)
    model = clf.save(base / "model.imgrec")
    rows = []
    for label in CLASSES:
        for i, f in enumerate(copy_files(sample_files("val", label, 12), base / "eval")):
            camera = "" if i == 11 else ("phone" if i % 2 else "dslr")
            rows.append((f"eval/{f.name}", label, camera))
    data = write_csv(base / "eval.csv", rows, header=("path", "label", "camera"))
    return model, data, base


def test_evaluate_group_by_through_the_cli(grouped):
    model, data, base = grouped
    out = base / "eval-out"
    result = run_imgrec("evaluate", model, data, "--group-by", "camera", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "camera: dslr" in result.stdout and "(missing)" in result.stdout
    assert "largest gap in accuracy" in result.stdout
    assert "too few to judge" in result.stderr  # 10 and 12 images per camera
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    groups = metrics["groups"]
    camera = groups["columns"]["camera"]
    assert {g: camera["groups"][g]["n"] for g in camera["groups"]} == {
        "dslr": 12,
        "phone": 10,
        MISSING: 2,
    }
    assert groups["data"] == str(data.resolve())
    total = sum(
        camera["groups"][g]["accuracy"] * camera["groups"][g]["n"] for g in camera["groups"]
    )
    assert total / 24 == pytest.approx(metrics["accuracy"])
    report = (out / "report.html").read_text()
    assert "Per-group evaluation" in report and "By camera" in report
    assert (out / "plots" / "group_accuracy.png").stat().st_size > 1000


def test_group_by_errors(grouped):
    model, data, base = grouped
    unknown = run_imgrec("evaluate", model, data, "--group-by", "lens", "--out", base / "x")
    assert_user_error(unknown, "no column 'lens'", "available columns are: camera")
    assert not (base / "x").exists()
    clf = ImageClassifier.load(model)  # the same check in-process: no second CLI start-up
    with pytest.raises(ImgrecError, match="needs a CSV dataset.*path,label,camera"):
        clf.evaluate(base / "train", group_by=["camera"])
    with pytest.raises(ImgrecError, match="no column to group by"):
        clf.evaluate(data, group_by=[" ", ""])
