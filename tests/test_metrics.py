"""compute_metrics against hand-computed values."""

import json
import math

import numpy as np
import pytest

from imgrec.errors import ImgrecError
from imgrec.evaluate import compute_metrics


def test_binary_case():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    targets = np.array([0, 0, 1, 1])  # predictions: 0, 1, 1, 0
    m = compute_metrics(probs, targets, ["cat", "dog"])

    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["weighted_f1"] == pytest.approx(0.5)
    expected_loss = -(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.3)) / 4
    assert m["log_loss"] == pytest.approx(expected_loss)
    assert m["top_k_accuracy"] == {"1": pytest.approx(0.5)}
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["per_class"]["dog"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["classes"] == ["cat", "dog"]


def test_three_class_case():
    probs = np.array(
        [
            [0.8, 0.1, 0.1],  # true 0, pred 0
            [0.6, 0.3, 0.1],  # true 0, pred 0
            [0.2, 0.5, 0.3],  # true 0, pred 1 (not in top 2)
            [0.1, 0.7, 0.2],  # true 1, pred 1
            [0.2, 0.3, 0.5],  # true 1, pred 2 (in top 2)
            [0.1, 0.2, 0.7],  # true 2, pred 2
        ]
    )
    targets = np.array([0, 0, 0, 1, 1, 2])
    m = compute_metrics(probs, targets, ["a", "b", "c"], top_k=2)

    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1 = {"a": 0.8, "b": 0.5, "c": 2 / 3}
    assert m["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["per_class"]["a"]["precision"] == pytest.approx(1.0)
    assert m["per_class"]["a"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1.0)
    assert m["top_k_accuracy"] == {"1": pytest.approx(4 / 6), "2": pytest.approx(5 / 6)}
    true_probs = [0.8, 0.6, 0.2, 0.7, 0.3, 0.7]
    assert m["log_loss"] == pytest.approx(-sum(math.log(p) for p in true_probs) / 6)
    assert m["macro_avg"]["f1"] == pytest.approx(m["macro_f1"])
    assert m["weighted_avg"]["support"] == 6


def test_absent_class_is_reported_not_fatal():
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    targets = np.array([0, 1, 0])  # class "c" never occurs nor is predicted
    m = compute_metrics(probs, targets, ["a", "b", "c"])

    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"][2] == [0, 0, 0]
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)  # over present classes
    assert m["top_k_accuracy"] == {"1": pytest.approx(2 / 3), "3": pytest.approx(1.0)}
    assert math.isfinite(m["log_loss"])


def test_single_sample_and_json_serialisable():
    probs = np.array([[0.1, 0.2, 0.7]], dtype=np.float32)
    m = compute_metrics(probs, np.array([2]), ["a", "b", "c"])

    assert m["n"] == 1
    assert m["accuracy"] == 1.0
    assert m["log_loss"] == pytest.approx(-math.log(0.7), rel=1e-5)
    assert json.loads(json.dumps(m)) == m


def test_confident_wrong_prediction_gives_finite_loss():
    m = compute_metrics(np.array([[1.0, 0.0]]), np.array([1]), ["a", "b"])
    assert m["log_loss"] == pytest.approx(-math.log(1e-15), rel=1e-3)


def test_bad_inputs():
    with pytest.raises(ImgrecError):
        compute_metrics(np.zeros((0, 2)), np.zeros(0, dtype=int), ["a", "b"])
    with pytest.raises(ValueError, match="columns"):
        compute_metrics(np.full((2, 3), 1 / 3), np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="class indices"):
        compute_metrics(np.full((1, 2), 0.5), np.array([2]), ["a", "b"])


def test_calibration_and_coverage_sections():
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.45, 0.55], [0.55, 0.45]])
    m = compute_metrics(probs, np.array([0, 1, 1, 1]), ["a", "b"], temperature=1.5)
    assert m["calibration"]["temperature"] == 1.5
    assert m["calibration"]["ece"] == pytest.approx((2 * 0.35 + 2 * 0.05) / 4, abs=0.01)
    assert sum(b["count"] for b in m["calibration"]["bins"]) == 4
    assert m["coverage"]["curve"][0] == pytest.approx(
        {"threshold": 0.85, "coverage": 0.5, "accuracy": 0.5}
    )
    reached = {t["accuracy"]: t["reached"] for t in m["coverage"]["targets"]}
    assert reached == {0.95: None, 0.99: None}  # no threshold gets past 50% here
