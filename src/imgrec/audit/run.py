"""Run an audit: scan every file once, search duplicates, then check labels and outliers in the
backbone's embedding space.

The embedding checks borrow a backbone from imgrec.models — the one place where the data stage
reaches up a stage, lazily, because "which pictures look alike" is only answerable with one.
Embeddings go through the on-disk EmbeddingStore, so training and later audits reuse them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgrec.audit.duplicates import DuplicatePairs, duplicate_clusters, find_duplicate_pairs
from imgrec.audit.result import (
    AuditResult,
    DuplicateGroup,
    LabelSuspect,
    Outlier,
    property_flags,
)
from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.facts import ImageFacts, scan_images

if TYPE_CHECKING:
    from imgrec.data.cache import DecodedCache  # torch: only the training path passes one
from imgrec.data.embedding_store import EmbeddingStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scanned:
    """What a scan found, computed elsewhere: facts (None where unreadable) and embeddings
    (rows NaN where none), both aligned with the dataset's samples, and the unreadable files."""

    facts: list[ImageFacts | None]
    unreadable: list[Skipped]
    vectors: np.ndarray | None = None


SHOWN_OUTLIERS = 12  # the ranking shown even when few are flagged: a person judges the rest


def audit_dataset(
    dataset: Dataset,
    *,
    embeddings: bool | str = True,
    model: str = "efficientnet_lite0",
    store: EmbeddingStore | None = None,
    progress: bool = False,
    decoded: DecodedCache | None = None,
    decode: Callable | None = None,
    scanned: Scanned | None = None,
) -> AuditResult:
    """Audit `dataset`. `embeddings`: True computes (or reuses) backbone embeddings for label
    errors, outliers and near copies that hashes miss; "cached" uses them only when every image
    already has one (what `imgrec train` does); False skips them. `decoded`, a DecodedCache
    built `with_facts` over the dataset's paths, replaces the scan: training's own decode.
    `decode` reads images for the embeddings when the paths are not files (shards: see
    data/sources.py `audit_source`). `scanned`, the facts and embeddings a cluster computed
    (audit/on_ray.py), replaces both the scan and the embedding."""
    started = time.perf_counter()
    if scanned is not None:
        facts_or_none, unreadable = list(scanned.facts), list(scanned.unreadable)
    elif decoded is not None:
        part = decoded.subset(dataset.paths)
        facts_or_none, unreadable = list(part.facts), list(part.skipped)
    else:
        facts_or_none, unreadable = scan_images(dataset.paths, progress=progress)
    keep = [i for i, f in enumerate(facts_or_none) if f is not None]
    good = Dataset(dataset.root, [dataset.samples[i] for i in keep], dataset.classes)
    facts: list[ImageFacts] = [facts_or_none[i] for i in keep]  # type: ignore[misc]

    if scanned is not None:
        vectors = scanned.vectors[keep] if embeddings and scanned.vectors is not None else None
    else:
        reading = (progress, decode)
        vectors = _embeddings(good, facts, embeddings, model, store, reading) if good else None
    if vectors is not None:
        usable = ~np.isnan(vectors).any(axis=1)
        if not usable.all():  # decodable by the scan but not by the model: rare, drop them
            unreadable += [
                Skipped(good.samples[i].path, "could not be embedded")
                for i in np.flatnonzero(~usable)
            ]
            rows = np.flatnonzero(usable)
            good = Dataset(good.root, [good.samples[i] for i in rows], good.classes)
            facts = [facts[i] for i in rows]
            vectors = vectors[rows]

    pairs = find_duplicate_pairs(
        [f.sha256 for f in facts], np.array([f.phash for f in facts], dtype=np.uint64), vectors
    )
    result = AuditResult(
        root=dataset.root,
        classes=list(dataset.classes),
        class_counts=good.class_counts(),
        split_counts=_split_counts(good),
        facts=facts,
        unreadable=sorted(list(dataset.skipped) + unreadable, key=lambda s: str(s.path)),
        duplicates=_groups(good, facts, pairs),
        property_flags=property_flags(good, facts),
        embeddings_checked=vectors is not None,
    )
    if vectors is not None:
        result.label_suspects, result.outliers = _embedding_checks(good, vectors)
    result.seconds = time.perf_counter() - started
    return result


def group_keys(dataset: Dataset, result: AuditResult) -> list[Hashable]:
    """One key per sample of `dataset` for Dataset.split(groups=...): duplicates share one."""
    key_of: dict[Path, Hashable] = {}
    for n, group in enumerate(result.duplicates):
        key_of.update((path, ("duplicates", n)) for path in group.paths)
    return [key_of.get(s.path, s.path) for s in dataset.samples]


def _embeddings(
    good: Dataset,
    facts: list[ImageFacts],
    mode: bool | str,
    model: str,
    store: EmbeddingStore | None,
    reading: tuple[bool, Callable | None],
) -> np.ndarray | None:
    if not mode:
        return None
    progress, decode = reading
    from imgrec.infer.embed import embed_files, embedding_key  # loads torch and timm
    from imgrec.models.registry import get_spec

    spec = get_spec(model)
    store = store if store is not None else EmbeddingStore()
    hashes = [f.sha256 for f in facts]
    if mode == "cached":
        found = store.get_many(embedding_key(spec), hashes)
        if len(found) < len(set(hashes)):
            return None
        return np.stack([found[h] for h in hashes]).astype(np.float32)
    vectors, _ = embed_files(good.paths, hashes, spec, store, progress=progress, decode=decode)
    return vectors


def _groups(good: Dataset, facts: list[ImageFacts], pairs: DuplicatePairs) -> list[DuplicateGroup]:
    clusters = duplicate_clusters(len(facts), pairs)
    cluster_of = np.zeros(len(facts), dtype=np.int64)
    for n, members in enumerate(clusters):
        cluster_of[members] = n
    weakest = np.ones(len(clusters))
    np.minimum.at(weakest, cluster_of[pairs.a], pairs.similarity)  # the weakest link per group
    groups = []
    for n, members in enumerate(clusters):
        samples = [good.samples[i] for i in members]
        exact = len({facts[i].sha256 for i in members}) == 1
        groups.append(
            DuplicateGroup(
                kind="exact" if exact else "near",
                paths=[s.path for s in samples],
                labels=[s.label for s in samples],
                splits=[s.split for s in samples],
                similarity=float(weakest[n]),
            )
        )
    return sorted(groups, key=lambda g: (not g.leakage, not g.label_conflict, str(g.paths[0])))


def _embedding_checks(
    good: Dataset, vectors: np.ndarray
) -> tuple[list[LabelSuspect], list[Outlier]]:
    # cleanlab and scikit-learn take ~2 s to import: only audits with embeddings pay for them
    from imgrec.audit.quality import label_issues, out_of_sample_probabilities, outlier_scores

    labels = np.array(good.targets())
    suspects: list[LabelSuspect] = []
    present = np.bincount(labels, minlength=len(good.classes))
    if (present >= 2).sum() >= 2:  # cross-validation needs two classes with two images
        probs = out_of_sample_probabilities(vectors, labels)
        issues = label_issues(labels, probs)
        suspects = [
            LabelSuspect(
                path=good.samples[i].path,
                given=good.classes[labels[i]],
                suggested=good.classes[int(issues.suggested[i])],
                quality=float(issues.quality[i]),
                split=good.samples[i].split,
            )
            for i in issues.ranked
            if issues.is_issue[i]
        ]
    outliers: list[Outlier] = []
    if len(good) >= 3:
        scores = outlier_scores(vectors)
        shown = max(SHOWN_OUTLIERS, int(scores.is_outlier.sum()))
        outliers = [
            Outlier(
                path=good.samples[i].path,
                label=good.samples[i].label,
                score=float(scores.score[i]),
                flagged=bool(scores.is_outlier[i]),
                split=good.samples[i].split,
            )
            for i in scores.ranked[:shown]
        ]
    return suspects, outliers


def _split_counts(good: Dataset) -> dict[str, dict[str, int]]:
    splits = sorted({s.split for s in good.samples if s.split is not None})
    return {name: good.subset(name).class_counts() for name in splits}
