"""Evaluation results and the files a person looks at: plots, metrics.json, report.html.

The HTML report is one self-contained file (plots and thumbnails embedded as base64 data
URIs, inline CSS, no scripts) so it can be mailed, archived or opened offline as is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader
from matplotlib.figure import Figure

from imgrec.evaluate.groups import gap_sentence, group_metrics
from imgrec.evaluate.html import data_uri, png_bytes, thumbnail_uri
from imgrec.evaluate.metrics import compute_metrics
from imgrec.evaluate.phases import phase_rows
from imgrec.evaluate.plots import (
    plot_confusion_matrix,
    plot_coverage,
    plot_group_accuracy,
    plot_pr_curves,
    plot_reliability,
    plot_training_curves,
)

_TEMPLATES = Path(__file__).parent / "templates"
_GALLERY_SIZE = 24


@dataclass
class EvaluationResult:
    """Predictions on a labelled set plus their metrics; knows how to present itself."""

    classes: list[str]
    probs: np.ndarray
    targets: np.ndarray
    paths: list[str]
    metrics: dict
    history: list[dict] | None = None
    title: str = "imgrec evaluation"
    info: dict | None = None
    skipped: list[tuple[str, str]] | None = None
    _pngs: dict[str, bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float64)
        self.targets = np.asarray(self.targets).astype(np.int64, copy=False)
        self.paths = [str(p) for p in self.paths]
        n = self.targets.shape[0]
        if self.probs.ndim != 2 or self.probs.shape != (n, len(self.classes)):
            raise ValueError(
                f"probs must have shape ({n}, {len(self.classes)}), got {self.probs.shape}"
            )
        if len(self.paths) != n:
            raise ValueError(f"expected {n} paths, got {len(self.paths)}")
        if self.skipped is not None:
            self.skipped = [(str(p), str(r)) for p, r in self.skipped]

    @classmethod
    def from_predictions(
        cls,
        probs: np.ndarray,
        targets: np.ndarray,
        classes: list[str],
        paths: list[str],
        *,
        top_k: int = 5,
        temperature: float = 1.0,
        **kw,
    ) -> EvaluationResult:
        """Build a result, computing metrics (``temperature``: the one the model's probabilities
        were made at); ``kw`` sets history, title, info, skipped."""
        metrics = compute_metrics(probs, targets, classes, top_k=top_k, temperature=temperature)
        return cls(list(classes), probs, targets, list(paths), metrics, **kw)

    def add_groups(self, columns: dict[str, list[str]], data: str, seed: int = 0) -> dict:
        """Per-group metrics (column -> one value per sample, in sample order) into
        metrics["groups"], so metrics.json, the plots and the report all show them."""
        groups = group_metrics(self.probs, self.targets, self.classes, columns, seed=seed)
        self.metrics["groups"] = {"data": data, **groups}
        self._pngs = None  # the group plot joins the figures
        return self.metrics["groups"]

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self.metrics["macro_f1"])

    @property
    def ece(self) -> float:
        """Expected calibration error of the top-1 confidence (metrics["calibration"])."""
        return float(self.metrics["calibration"]["ece"])

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class index per sample (arg-max of probs)."""
        return self.probs.argmax(axis=1)

    def _figures(self) -> dict[str, Figure]:
        figures = {
            "confusion_matrix": plot_confusion_matrix(
                self.metrics["confusion_matrix"], self.classes
            ),
            "pr_curves": plot_pr_curves(self.probs, self.targets, self.classes),
        }
        calibration = self.metrics.get("calibration")
        if calibration:
            figures["reliability"] = plot_reliability(calibration["bins"], calibration["ece"])
        coverage = self.metrics.get("coverage")
        if coverage:
            figures["coverage"] = plot_coverage(coverage["curve"], coverage["targets"])
        if self.history:
            figures["training_curves"] = plot_training_curves(self.history)
        if self.metrics.get("groups"):
            figures["group_accuracy"] = plot_group_accuracy(self.metrics["groups"])
        return figures

    def _plot_pngs(self) -> dict[str, bytes]:
        """Rendered once: save_plots and save_report both need them (about 1 s each)."""
        if self._pngs is None:
            self._pngs = {name: png_bytes(fig) for name, fig in self._figures().items()}
        return self._pngs

    def save_plots(self, folder: str | Path) -> dict[str, Path]:
        """Write confusion_matrix.png, pr_curves.png, reliability.png, coverage.png and (with
        history) training_curves.png."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, png in self._plot_pngs().items():
            path = folder / f"{name}.png"
            path.write_bytes(png)
            written[name] = path
        return written

    def save_metrics(self, path: str | Path) -> None:
        """Write the metrics dict as indented JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.metrics, indent=2) + "\n", encoding="utf-8")

    def to_json(self) -> dict:
        """Metrics plus one row per sample, with class names rather than indices."""
        preds = self.predictions
        return {
            "metrics": self.metrics,
            "predictions": [
                {
                    "path": path,
                    "target": self.classes[int(t)],
                    "predicted": self.classes[int(p)],
                    "confidence": float(self.probs[i, p]),
                }
                for i, (path, t, p) in enumerate(zip(self.paths, self.targets, preds, strict=True))
            ],
        }

    def _gallery(self) -> tuple[list[dict], int]:
        """Misclassified samples, most confident mistakes first, capped for file size."""
        preds = self.predictions
        wrong = np.flatnonzero(preds != self.targets)
        confidence = self.probs[wrong, preds[wrong]]
        order = wrong[np.argsort(-confidence, kind="stable")][:_GALLERY_SIZE]
        tiles = [
            {
                "name": Path(self.paths[i]).name or self.paths[i],
                "path": self.paths[i],
                "true": self.classes[int(self.targets[i])],
                "predicted": self.classes[int(preds[i])],
                "confidence": float(self.probs[i, preds[i]]),
                "true_prob": float(self.probs[i, self.targets[i]]),
                "thumbnail": thumbnail_uri(self.paths[i]),
            }
            for i in order
        ]
        return tiles, int(wrong.size)

    def _cards(self) -> list[tuple[str, str]]:
        m = self.metrics
        cards = [
            ("Accuracy", f"{m['accuracy']:.1%}"),
            ("Balanced accuracy", f"{m['balanced_accuracy']:.1%}"),
            ("Macro F1", f"{m['macro_f1']:.3f}"),
            ("Log loss", f"{m['log_loss']:.3f}"),
        ]
        if "calibration" in m:
            cards.append(("ECE", f"{m['calibration']['ece']:.1%}"))
        top_k = {int(k): v for k, v in m.get("top_k_accuracy", {}).items()}
        k = max(top_k, default=1)
        if 1 < k < len(self.classes):  # top-C accuracy is always 100%: not worth a card
            cards.append((f"Top-{k} accuracy", f"{top_k[k]:.1%}"))
        cards.append(("Samples", str(m["n"])))
        return cards

    def render_html(self, card_href: str | None = None) -> str:
        """The report as an HTML string (what save_report writes). `card_href`: where the
        model card is, relative to the report (a run folder's model_card.html); the report
        then links to it near the top, since the card says what the numbers here mean for
        using the model."""
        env = Environment(
            loader=FileSystemLoader(_TEMPLATES),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        plots = {name: data_uri(png, "image/png") for name, png in self._plot_pngs().items()}
        tiles, n_wrong = self._gallery()
        return env.get_template("report.html.j2").render(
            title=self.title,
            card_href=card_href,
            info=[(str(k), str(v)) for k, v in (self.info or {}).items()],
            phases=phase_rows(self.metrics.get("phases")),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cards=self._cards(),
            classes=self.classes,
            metrics=self.metrics,
            plots=plots,
            tiles=tiles,
            n_wrong=n_wrong,
            skipped=self.skipped or [],
            groups=self.metrics.get("groups"),
            gap_sentence=gap_sentence,
            calibration_reading=calibration_reading(self.metrics.get("calibration")),
            coverage_reading=coverage_reading(self.metrics.get("coverage")),
        )

    def save_report(self, path: str | Path, card_href: str | None = None) -> Path:
        """Write the single-file HTML report and return its path; `card_href` as in
        render_html."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render_html(card_href), encoding="utf-8")
        return path


def calibration_reading(calibration: dict | None) -> str:
    """One plain sentence from the reliability bins: what a typical stated confidence means."""
    if not calibration or not calibration["bins"]:
        return ""
    busiest = max(calibration["bins"], key=lambda b: b["count"])
    said, right = busiest["confidence"], busiest["accuracy"]
    if abs(said - right) < 0.01:
        verdict = "well calibrated there"
    elif said > right:
        verdict = "over-confident there"
    else:
        verdict = "under-confident there"
    return (
        f"When the model says {said:.0%} it is right {right:.0%} of the time "
        f"({busiest['count']} images, the most common confidence; {verdict}); "
        f"on average its confidence is off by {calibration['ece']:.1%} (ECE)."
    )


def coverage_reading(coverage: dict | None) -> str:
    """One plain sentence per target accuracy: the --min-confidence that reaches it."""
    if not coverage:
        return ""
    parts = []
    for target in coverage["targets"]:
        reached = target["reached"]
        if reached is None:
            parts.append(f"no threshold reaches {target['accuracy']:.0%} accuracy")
        else:
            parts.append(
                f"--min-confidence {floor3(reached['threshold']):.3f} answers "
                f"{reached['coverage']:.0%} of the images at {reached['accuracy']:.1%} accuracy "
                f"(target {target['accuracy']:.0%})"
            )
    return "; ".join(parts) + "."


def floor3(threshold: float) -> float:
    """`threshold` rounded down to 3 decimals: as a --min-confidence it keeps what it kept."""
    return math.floor(threshold * 1000) / 1000
