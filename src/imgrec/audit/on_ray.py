"""`imgrec audit --on ray`: the per-image work of an audit on a Ray cluster, the rest here.

What grows with the number of images (reading every file, its facts and hashes, the backbone's
embedding) runs on the cluster as one job of infer/on_ray.py; what needs every image at once
(exact and near duplicates with faiss, leakage between splits, label errors, outliers) runs on
this machine over the facts and embeddings it sent back, exactly as `imgrec audit` does. The
driver holds F floats per image (1280 for EfficientNet-Lite0: 5 KB), never pixels.

The embeddings are the ones `imgrec audit` and training compute (same backbone, decoding and
preprocessing), so they go into the local embedding store: a later audit or training run here
reuses them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imgrec.audit.result import AuditResult
from imgrec.audit.run import Scanned, audit_dataset
from imgrec.data.dataset import Dataset, Sample, Skipped, load_dataset
from imgrec.data.embedding_store import EmbeddingStore
from imgrec.data.facts import facts_from_dict
from imgrec.data.remote import is_url, list_remote, url_text
from imgrec.data.shard_files import is_shard_folder
from imgrec.errors import ImgrecError
from imgrec.infer.jobs import Job, tables_of
from imgrec.infer.on_ray import RayOptions
from imgrec.infer.predict import image_progress
from imgrec.infer.stages import EmbedHead
from imgrec.text import shown


def audit_on_ray(
    source: str | Path,
    *,
    model: str = "efficientnet_lite0",
    embeddings: bool = True,
    options: RayOptions | None = None,
    store: EmbeddingStore | None = None,
) -> AuditResult:
    """Audit a folder, CSV or object-storage prefix with the per-image work on Ray."""
    options = options or RayOptions()
    dataset = _listing(source)
    job, width = _embedding_job(model)
    sources = [_source(s.path) for s in dataset.samples]
    scanned = Scanned([None] * len(sources), [], np.full((len(sources), width), np.nan, np.float32))
    hashes: dict[str, np.ndarray] = {}
    with image_progress(options.progress, len(sources), "Auditing", transient=True) as advance:
        for table in tables_of(job, sources, "ray", options):
            _take(table, dataset, scanned, hashes)
            advance(table.num_rows)
    _store(hashes, model, store)
    return audit_dataset(dataset, embeddings=embeddings, model=model, scanned=scanned)


def _listing(source: str | Path) -> Dataset:
    """The labelled samples of a local folder or CSV, or of an object-storage prefix (whose
    samples keep their URLs: the cluster reads them, nothing is downloaded here)."""
    if is_shard_folder(source):
        raise ImgrecError(
            f"{shown(source)} is a shards folder: its facts are already in its records; audit "
            "it with --on local."
        )
    if not is_url(source):
        return load_dataset(source)
    listing = list_remote(url_text(source))
    samples = [Sample(Path(i.source), i.label, i.split) for i in listing.inputs]
    skipped = [Skipped(Path(url), why) for url, why in listing.skipped]
    return Dataset(Path(listing.root), samples, listing.classes, skipped)


def _source(path: Path) -> str:
    """A sample's path as the cluster reads it (a URL gets back the "//" Path dropped)."""
    return url_text(path) if is_url(path) else str(path)


def _embedding_job(model: str) -> tuple[Job, int]:
    """The job: the audit backbone's features, the scan's facts with them."""
    from imgrec.infer.embed import preprocessing_of
    from imgrec.models.anatomy import num_features
    from imgrec.models.fast_features import FEATURES, feature_graph
    from imgrec.models.registry import create_model, get_spec

    spec = get_spec(model)
    backbone = create_model(spec, 2, "imagenet")
    width = num_features(backbone)
    graph = feature_graph(backbone, spec.input_size)
    return Job(graph, EmbedHead(FEATURES, width, facts=True), preprocessing_of(spec), True), width


def _take(table: pa.Table, dataset: Dataset, scanned: Scanned, hashes: dict) -> None:
    """Put a table's rows into `scanned` (and each file's vector into `hashes`, by content);
    the vectors go column-wise through numpy, not row by row through Python floats."""
    failed = pc.is_valid(table["error"])
    for i, why in zip(
        table.filter(failed)["index"].to_pylist(),
        table.filter(failed)["error"].to_pylist(),
        strict=True,
    ):
        scanned.unreadable.append(Skipped(dataset.samples[i].path, why))
    good = table.filter(pc.invert(failed))
    if good.num_rows == 0:
        return
    rows = good["index"].to_numpy()
    width = scanned.vectors.shape[1]
    vectors = good["embedding"].combine_chunks().flatten().to_numpy().reshape(-1, width)
    scanned.vectors[rows] = vectors
    for i, text, vector in zip(rows, good["facts"].to_pylist(), vectors, strict=True):
        facts = facts_from_dict(json.loads(text), dataset.samples[i].path)
        scanned.facts[i] = facts
        hashes[facts.sha256] = vector


def _store(vectors: dict[str, np.ndarray], model: str, store: EmbeddingStore | None) -> None:
    from imgrec.infer.embed import embedding_key
    from imgrec.models.registry import get_spec

    store = store if store is not None else EmbeddingStore()
    store.put_many(embedding_key(get_spec(model)), vectors)
