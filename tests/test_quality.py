"""Label errors and outliers from real embeddings: flipped labels must rank near the top, the
placeholder picture in hymenoptera_data must be among the strangest images, and small or
degenerate inputs must not crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgrec.audit.quality import label_issues, out_of_sample_probabilities, outlier_scores
from imgrec.cli import SAMPLE
from imgrec.data.embedding_store import EmbeddingStore
from imgrec.infer.embed import embed_files
from imgrec.models.registry import DEFAULT_MODEL, get_spec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera_data"
PLACEHOLDER = SHARED / "train" / "ants" / "imageNotFound.gif"
EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif"}


def embedded(root: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(paths, labels ants=0 / bees=1, embeddings) of every image under root/{train,val}/*."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)
    labels = np.array([["ants", "bees"].index(p.parent.name) for p in paths])
    with EmbeddingStore() as store:  # the session's temporary cache: later modules reuse it
        x, skipped = embed_files(paths, None, get_spec(DEFAULT_MODEL), store)
    assert skipped == []
    return paths, labels, x


@pytest.fixture(scope="module")
def sample():
    return embedded(SAMPLE)


def flipped(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    which = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    noisy = labels.copy()
    noisy[which] = 1 - noisy[which]
    return noisy, which


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_labels_rank_in_the_top_tenth(sample, seed):
    _, labels, x = sample
    noisy, which = flipped(labels, 0.05, seed)
    issues = label_issues(noisy, out_of_sample_probabilities(x, noisy, seed=seed))
    top = set(issues.ranked[: int(np.ceil(0.10 * len(labels)))].tolist())
    recall = len(top & set(which.tolist())) / len(which)
    assert recall >= 0.6, f"only {recall:.0%} of the flipped labels in the top 10%"
    # cleanlab's filter is conservative on 170 images: it flagged 74% of the flips on average
    # over 10 seeds, 38% at worst, with about as many flags as flips.
    assert issues.is_issue[which].mean() >= 0.25
    assert issues.is_issue.sum() <= 3 * len(which)  # without flagging half the data set
    assert (issues.suggested[which] == labels[which]).mean() >= 0.6  # suggests the true label


def test_clean_labels_give_few_issues_and_consistent_outputs(sample):
    _, labels, x = sample
    probs = out_of_sample_probabilities(x, labels)
    assert probs.shape == (len(labels), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    issues = label_issues(labels, probs)
    assert issues.is_issue.sum() <= 0.05 * len(labels)
    assert np.all(np.diff(issues.quality[issues.ranked]) >= 0)  # worst first
    assert sorted(issues.ranked.tolist()) == list(range(len(labels)))


def test_outlier_scores_are_ranked_and_rarely_flag_normal_photos(sample):
    _, _, x = sample
    scores = outlier_scores(x)
    assert scores.score.shape == (len(x),)
    assert np.all((scores.score > 0) & (scores.score <= 1))
    assert np.all(np.diff(scores.score[scores.ranked]) >= 0)  # most outlying first
    assert scores.is_outlier.sum() <= 0.05 * len(x)  # ordinary photos of two insects
    flagged = set(np.flatnonzero(scores.is_outlier).tolist())
    assert flagged == set(scores.ranked[: len(flagged)].tolist())  # flags are the top ranks


def test_a_foreign_picture_is_the_top_outlier(sample):
    """A vector far from all photos (as a placeholder graphic is) is ranked first and flagged."""
    _, _, x = sample
    foreign = -x[:1] + x.mean(axis=0)  # points away from the photos' cluster
    scores = outlier_scores(np.vstack([x, foreign]))
    assert scores.ranked[0] == len(x)
    assert scores.is_outlier[len(x)]


@pytest.mark.slow
@pytest.mark.skipif(not PLACEHOLDER.exists(), reason="needs ../shared/datasets/hymenoptera_data")
def test_placeholder_gif_is_a_top_five_outlier_of_hymenoptera_data():
    paths, _, x = embedded(SHARED)
    assert len(paths) == 398
    ranked = [paths[i] for i in outlier_scores(x).ranked]
    assert PLACEHOLDER in ranked[:5], f"placeholder ranked {ranked.index(PLACEHOLDER) + 1}"


# ---- small and degenerate inputs ---------------------------------------------------------------
def test_empty_input():
    x = np.zeros((0, 8))
    probs = out_of_sample_probabilities(x, [])
    assert probs.shape[0] == 0
    issues = label_issues([], probs)
    assert len(issues.quality) == len(issues.ranked) == 0
    assert len(outlier_scores(x).score) == 0


def test_one_class_only():
    x = np.random.default_rng(0).standard_normal((6, 8))
    probs = out_of_sample_probabilities(x, [0] * 6)
    assert probs.shape == (6, 1)
    issues = label_issues([0] * 6, probs)
    assert not issues.is_issue.any()


def test_a_class_with_a_single_image():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (6, 8)) + 4, rng.normal(0, 1, (6, 8)) - 4, rng.normal(0, 1, 8)])
    labels = [0] * 6 + [1] * 6 + [2]
    probs = out_of_sample_probabilities(x, labels)
    assert probs.shape == (13, 3) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    issues = label_issues(labels, probs)
    assert issues.quality.shape == (13,)
    assert not issues.is_issue[:12].any()  # the two real classes are cleanly separated


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tiny_sets(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 16))
    labels = [i % 2 for i in range(n)]
    probs = out_of_sample_probabilities(x, labels)
    assert probs.shape == (n, max(labels) + 1) and np.isfinite(probs).all()
    issues = label_issues(labels, probs)
    assert issues.is_issue.shape == (n,)
    scores = outlier_scores(x)
    assert scores.score.shape == (n,) and scores.is_outlier.shape == (n,)


def test_identical_embeddings():
    x = np.ones((12, 8))
    labels = [0, 1] * 6
    issues = label_issues(labels, out_of_sample_probabilities(x, labels))
    assert np.isfinite(issues.quality).all()
    scores = outlier_scores(x)
    assert not scores.is_outlier.any()


def test_bad_inputs_are_refused_with_a_reason():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="labels"):
        out_of_sample_probabilities(x, [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        out_of_sample_probabilities(np.full((4, 3), np.nan), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        outlier_scores(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        outlier_scores(np.ones(4))
