"""Calibration: ECE by hand, temperature fitting on synthetic logits, the coverage curve, and
`imgrec calibrate` end to end on the shipped sample (file rewritten, argmax kept, the
temperature carried into an ONNX export), with its one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from runhelpers import assert_user_error, make_class_dataset, run_imgrec, sample_files
from servehelpers import small_model

from imgrec import ImageClassifier
from imgrec.bundle.format import load_bundle, read_metadata
from imgrec.cli import SAMPLE
from imgrec.errors import ImgrecError
from imgrec.evaluate.calibrate import MIN_IMAGES
from imgrec.evaluate.calibration import expected_calibration_error, reliability_bins
from imgrec.evaluate.selective import coverage_curve, selective_summary, threshold_for
from imgrec.evaluate.temperature import (
    TemperatureScaling,
    cross_fitted,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from imgrec.infer.predict import UNKNOWN, answer_label, check_min_confidence
from imgrec.runs.calibrate import calibrate_file


# ---- ECE and reliability bins, by hand ----------------------------------------------------------
def test_ece_hand_computed():
    # bin (0.8, 0.9]: confidence 0.85, accuracy 1/2 -> gap 0.35 on 2 images
    # bin (0.5, 0.6]: confidence 0.55, accuracy 1/2 -> gap 0.05 on 2 images
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.45, 0.55], [0.55, 0.45]])
    targets = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probs, targets, bins=10) == pytest.approx(
        (2 * 0.35 + 2 * 0.05) / 4
    )
    rows = reliability_bins(probs, targets, bins=10)
    assert [(r["low"], r["count"]) for r in rows] == [(pytest.approx(0.5), 2), (0.8, 2)]
    assert rows[1]["confidence"] == pytest.approx(0.85) and rows[1]["accuracy"] == 0.5


def test_ece_is_zero_when_confidence_equals_accuracy():
    probs = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


# ---- the coverage curve -------------------------------------------------------------------------
def test_coverage_curve_by_hand_keeps_ties_together():
    # confidences 0.9 (right), 0.8 (wrong), 0.8 (right), 0.6 (right)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.8, 0.2], [0.4, 0.6]])
    targets = np.array([0, 0, 0, 1])
    curve = coverage_curve(probs, targets)
    np.testing.assert_allclose(curve["threshold"], [0.9, 0.8, 0.6])
    np.testing.assert_allclose(curve["coverage"], [0.25, 0.75, 1.0])
    np.testing.assert_allclose(curve["accuracy"], [1.0, 2 / 3, 3 / 4])
    assert threshold_for(curve, 0.75) == {"threshold": 0.6, "coverage": 1.0, "accuracy": 0.75}
    assert threshold_for(curve, 0.99)["threshold"] == pytest.approx(0.9)
    wrong = np.array([1, 1, 1, 0])  # every prediction wrong: no threshold helps
    assert threshold_for(coverage_curve(probs, wrong), 0.5) is None


def test_selective_summary_is_small_and_json_ready():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(500, 3)) * 3)
    summary = selective_summary(probs, rng.integers(0, 3, 500))
    assert len(summary["curve"]) <= 60
    assert summary["curve"][-1]["coverage"] == 1.0
    assert [t["accuracy"] for t in summary["targets"]] == [0.95, 0.99]
    json.dumps(summary)


# ---- temperature fitting ------------------------------------------------------------------------
def _synthetic(temperature: float, n: int = 4000, seed: int = 0):
    """Labels drawn from softmax(z); the model reports z * temperature, so the right T is it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4)) * 2.5
    p = softmax(z)
    targets = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z * temperature, targets


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(true_t):
    logits, targets = _synthetic(true_t)
    fitted = fit_temperature(logits, targets)
    assert fitted == pytest.approx(true_t, rel=0.06)
    assert negative_log_likelihood(logits, targets, fitted) <= negative_log_likelihood(
        logits, targets, 1.0
    )


def test_scaling_keeps_the_ranking_and_cross_fitting_lowers_ece():
    logits, targets = _synthetic(3.0)
    scaler = TemperatureScaling().fit(logits, targets)
    after = scaler.predict_proba(logits)
    assert (after.argmax(1) == logits.argmax(1)).all()
    honest = cross_fitted(logits, targets)
    assert honest["ece_after"] < honest["ece_before"] / 2
    assert honest["nll_after"] < honest["nll_before"]


def test_fit_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((3, 2)), np.zeros(2, dtype=int))


def test_min_confidence_rules():
    assert answer_label(["ants", "bees"], [0.6, 0.4], 0.7) == UNKNOWN
    assert answer_label(["ants", "bees"], [0.7, 0.3], 0.7) == "ants"
    assert answer_label(["ants", "bees"], [0.51, 0.49], None) == "ants"
    assert check_min_confidence(0.0) == 0.0
    for bad in (1.0, -0.1, 2.0):
        with pytest.raises(ImgrecError, match="below 1"):
            check_min_confidence(bad)


# ---- imgrec calibrate end to end ----------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def calibrated(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated") / "calibrated.imgrec"
    result = run_imgrec("calibrate", model, SAMPLE, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sample_files("val", "ants", 4) + sample_files("val", "bees", 4)


@pytest.mark.slow
def test_calibrate_cli_rewrites_only_the_temperature(model, calibrated):
    out, stdout = calibrated
    assert "50 images" in stdout and "val split" in stdout
    assert "ECE" in stdout and "cross-fitted" in stdout and "(unchanged)" in stdout
    old_state, old_meta = load_bundle(model)
    new_state, new_meta = load_bundle(out)
    assert old_meta.get("calibration", {}).get("temperature", 1.0) == 1.0
    cal = new_meta["calibration"]
    assert cal["temperature"] != pytest.approx(1.0, abs=1e-3)
    assert cal["images"] == 50 and cal["ece_after"] <= cal["ece_before"] + 1e-9
    assert set(cal["cross_fitted"]) >= {"ece_before", "ece_after", "nll_before", "nll_after"}
    assert {k: v for k, v in new_meta.items() if k != "calibration"} == {
        k: v for k, v in old_meta.items() if k != "calibration"
    }
    assert old_state.keys() == new_state.keys()
    assert all(torch_equal(old_state[k], new_state[k]) for k in old_state)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


@pytest.mark.slow
def test_calibrated_probabilities_differ_but_argmax_is_identical(model, calibrated, photos):
    plain = ImageClassifier.load(model)
    cal = ImageClassifier.load(calibrated[0])
    assert cal.temperature == pytest.approx(
        read_metadata(calibrated[0])["calibration"]["temperature"]
    )
    _, p_plain, _ = plain.predict_proba(photos)
    _, p_cal, _ = cal.predict_proba(photos)
    assert not np.allclose(p_plain, p_cal, atol=1e-3)
    assert (p_plain.argmax(1) == p_cal.argmax(1)).all()


@pytest.mark.slow
def test_onnx_export_carries_the_temperature(calibrated, photos, tmp_path):
    from imgrec.bundle.predictor import open_predictor
    from imgrec.export import export_model

    check = make_class_dataset(tmp_path / "check", n=3)
    result = export_model(
        calibrated[0], "onnx", tmp_path / "m.onnx", calibration=check, measure_speed=False
    )
    _, p_onnx, _ = open_predictor(result.path).predict_proba(photos)
    _, p_cal, _ = ImageClassifier.load(calibrated[0]).predict_proba(photos)
    np.testing.assert_allclose(p_onnx, p_cal, atol=1e-4)


@pytest.mark.slow
def test_calibrate_in_place_with_the_python_api(model, tmp_path):
    copy = Path(shutil.copy2(model, tmp_path / "model.imgrec"))
    report, written = calibrate_file(copy, SAMPLE / "val")  # no splits here: all 50 images
    assert written == copy and "all images" in report.source and report.images == 50
    assert ImageClassifier.load(copy).temperature == pytest.approx(report.temperature)
    assert report.nll_after <= report.nll_before + 1e-9  # the fit minimises exactly this


@pytest.mark.slow
def test_a_scikit_learn_model_calibrates_through_the_api(tmp_path, photos):
    from imgrec import load_dataset

    train = load_dataset(make_class_dataset(tmp_path / "train", n=10))
    clf = ImageClassifier("rf-hog").fit(train, progress=False)
    _, before, _ = clf.predict_proba(photos)
    report = clf.calibrate(SAMPLE / "val")  # its logits are log-probabilities
    assert clf.temperature == report.temperature != pytest.approx(1.0, abs=1e-3)
    _, after, _ = clf.predict_proba(photos)
    assert (before.argmax(1) == after.argmax(1)).all() and not np.allclose(before, after)
    clf.save(tmp_path / "forest.imgrec")
    assert ImageClassifier.load(tmp_path / "forest.imgrec").temperature == clf.temperature


# ---- bad input: one line, non-zero exit ----------------------------------------------------------
@pytest.mark.slow
def test_cli_refuses_a_file_that_is_not_a_model(tmp_path):
    fake = tmp_path / "notes.imgrec"
    fake.write_text("not a model")
    assert_user_error(run_imgrec("calibrate", fake, SAMPLE), "not an imgrec model file")


@pytest.mark.slow
def test_too_few_images_says_how_many_are_needed(model, tmp_path):
    few = make_class_dataset(tmp_path / "few", n=4)
    with pytest.raises(ImgrecError, match=f"at least {MIN_IMAGES} readable .* has 8"):
        calibrate_file(model, few)


@pytest.mark.slow
def test_library_errors_are_one_sentence(model, tmp_path):
    wasps = make_class_dataset(tmp_path / "three", n=2)
    shutil.copytree(wasps / "ants", wasps / "wasps")
    with pytest.raises(ImgrecError, match="labels the model does not know: wasps"):
        calibrate_file(model, wasps)
    with pytest.raises(ImgrecError, match="no model file"):
        calibrate_file(tmp_path / "missing.imgrec", SAMPLE)
    with pytest.raises(ImgrecError, match="does not exist"):
        calibrate_file(model, tmp_path / "missing-data")
    with pytest.raises(ImgrecError, match="no 'test' images"):
        calibrate_file(model, SAMPLE, split="test")
    with pytest.raises(ImgrecError, match="--split is one of"):
        calibrate_file(model, SAMPLE, split="train")
