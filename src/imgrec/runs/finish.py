"""The steps that end every job's run: metrics, plots, report, history, model file, card.

`imgrec train`, `retrain`, `compare` and `tune` all finish here, so a run folder looks the same
whichever job wrote it, and the model file is written in one place.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgrec.bundle.run_folder import RunFiles
from imgrec.data.dataset import Dataset, Skipped
from imgrec.text import csv_cell

if TYPE_CHECKING:
    from imgrec.audit.result import AuditResult
    from imgrec.classifier import ImageClassifier
    from imgrec.evaluate import EvaluationResult

HEADLINE = ("n", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "log_loss")


@dataclass
class FinishedRun:
    model_path: Path
    report_path: Path
    card_path: Path | None = None


def headline_metrics(metrics: dict) -> dict:
    """The figures a model file carries about itself (the full set is in metrics.json)."""
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def finish_run(
    folder: Path,
    clf: ImageClassifier,
    result: EvaluationResult,
    evaluated_on: str,
    *,
    skipped: Sequence[Skipped] = (),
    model_file: str | None = None,
    full: bool = True,
) -> FinishedRun:
    """Write what a finished run shows: metrics.json, predictions.csv, report.html, the model
    file and (with `full`) plots/, history.csv, skipped.csv and the model card, embedded in the
    model file, which is written once.

    `model_file` is a name inside `folder` (default model.imgrec); `skipped` lists the
    unreadable images, reported once each.
    """
    files = RunFiles(folder)
    result.save_metrics(files.metrics)
    write_predictions(files.predictions, result)
    report = result.save_report(files.report, card_href=files.card_html.name if full else None)
    metrics = {"split": evaluated_on, **headline_metrics(result.metrics)}
    if "best_epoch" in clf.metadata:
        metrics["best_epoch"] = clf.metadata["best_epoch"]
    if not full:
        model_path = clf.save(folder / model_file if model_file else files.model, metrics=metrics)
        return FinishedRun(model_path, report)
    unique = list({s.path: s for s in skipped}.values())
    if unique:  # before the card, which counts them
        Dataset(folder, [], list(clf.classes), unique).write_skipped(files.skipped)
    result.save_plots(files.plots)
    work_history = files.checkpoints / "history.csv"
    if work_history.is_file():
        shutil.copyfile(work_history, files.history)
    card = _save_with_card(files, clf, metrics, result)
    _keep_graph(files.model, clf)
    return FinishedRun(files.model, report, card)


def write_predictions(path: Path, result: EvaluationResult) -> None:
    """predictions.csv: one row per scored image (path, actual, predicted, confidence, then
    one probability column per class), so a person (or imgrec studio's "most confidently
    wrong" view) can look at every mistake without running the model again."""
    predicted = result.predictions
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["path", "actual", "predicted", "confidence", *(f"prob_{c}" for c in result.classes)]
        )
        for i, (image, actual) in enumerate(zip(result.paths, result.targets, strict=True)):
            probs = result.probs[i]
            writer.writerow(
                [
                    csv_cell(str(image)),
                    csv_cell(result.classes[int(actual)]),
                    csv_cell(result.classes[int(predicted[i])]),
                    f"{probs[predicted[i]]:.6f}",
                    *(f"{p:.6f}" for p in probs),
                ]
            )


def _save_with_card(
    files: RunFiles, clf: ImageClassifier, metrics: dict, result: EvaluationResult
) -> Path:
    """Write the model card from the metadata the model file will carry, then the model file
    once, with the card embedded. Returns the card's HTML page."""
    from imgrec.bundle.format import save_bundle, tensor_data_sha256
    from imgrec.bundle.model import model_metadata
    from imgrec.monitor.card import write_card_for

    trained = clf.trained()
    state = trained.network.state_dict()
    metadata = model_metadata(trained, metrics)
    card = write_card_for(files.folder, metadata, tensor_data_sha256(state), evaluation=result)
    metadata["model_card"] = card.text
    save_bundle(files.model, state, metadata)
    clf.metadata = metadata
    return card.html


def _keep_graph(model_file: Path, clf: ImageClassifier) -> None:
    """Keep the new model's ONNX graph now, so that the first `imgrec predict` of it starts as
    fast as every later one (bundle/predictor.py): the graph evaluation ran on, else a new
    export (about a second)."""
    from imgrec.bundle.predictor import keep_graph_for

    keep_graph_for(model_file, clf.trained(), clf.made_graph())


def write_audit(folder: Path, audit: AuditResult, crossing: int | None = None) -> None:
    """audit.json: the audit the job ran first (and, after splitting, how many duplicate
    groups straddle splits: 0 when imgrec made the split)."""
    report = audit.to_json()
    if crossing is not None:
        report["cross_split_duplicates"] = crossing
    RunFiles(folder).audit.write_text(json.dumps(report, indent=2) + "\n")
