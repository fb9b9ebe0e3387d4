"""The files of one drift check: drift.json for schedulers and drift.html for a person.

The page is self-contained (plots embedded as data URIs, inline CSS, no scripts): the verdict
and what to do first, then every test, then the distributions behind them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader
from matplotlib.figure import Figure

from imgrec.evaluate.html import data_uri, png_bytes
from imgrec.monitor.detect import DriftRun
from imgrec.monitor.window import PROPERTY_NAMES, Window

_TEMPLATES = Path(__file__).parent / "templates"
_REF, _CUR = "#64748b", "#dc2626"


def drift_json(run: DriftRun) -> dict:
    """Everything drift.json holds: verdict, every test, both windows, the model."""
    return {
        "model": str(run.model_path),
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        **run.result.to_json(),
    }


def save_drift_report(run: DriftRun, folder: str | Path) -> dict[str, Path]:
    """Write drift.json and drift.html into `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "drift.json", "html": folder / "drift.html"}
    document = drift_json(run)
    paths["json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    figures = {
        "confidence": _confidence_figure(run.reference, run.current),
        "properties": _properties_figure(run.reference, run.current),
        "classes": _classes_figure(run.reference, run.current),
    }
    mmd = next((t for t in run.result.tests if t.name == "embedding" and not t.skipped), None)
    if mmd is not None:
        figures["mmd"] = _mmd_figure(mmd.details["null"], mmd.statistic)
    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True)
    html = env.get_template("drift.html.j2").render(
        doc=document,
        result=run.result,
        figures={k: data_uri(png_bytes(f), "image/png") for k, f in figures.items()},
    )
    paths["html"].write_text(html, encoding="utf-8")
    return paths


def _hist(ax, reference: np.ndarray, current: np.ndarray, title: str) -> None:
    x, y = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if len(x) == 0 or len(y) == 0:
        ax.set_title(f"{title} (not recorded)")
        ax.set_axis_off()
        return
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    bins = np.linspace(low, high if high > low else low + 1, 25)
    ax.hist(x, bins=bins, density=True, alpha=0.55, color=_REF, label="reference")
    ax.hist(y, bins=bins, density=True, alpha=0.55, color=_CUR, label="current")
    ax.set_title(title)
    ax.set_yticks([])


def _confidence_figure(reference: Window, current: Window) -> Figure:
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    _hist(ax, reference.confidence, current.confidence, "top-1 confidence")
    ax.legend()
    return fig


def _properties_figure(reference: Window, current: Window) -> Figure:
    fig = Figure(figsize=(12, 2.8), layout="constrained")
    axes = fig.subplots(1, len(PROPERTY_NAMES))
    for j, (ax, name) in enumerate(zip(axes, PROPERTY_NAMES, strict=True)):
        _hist(ax, reference.properties[:, j], current.properties[:, j], name)
    axes[0].legend(fontsize=8)
    return fig


def _classes_figure(reference: Window, current: Window) -> Figure:
    classes = sorted(set(reference.labels.tolist()) | set(current.labels.tolist()))
    ref = np.array([np.mean(reference.labels == c) for c in classes])
    cur = np.array([np.mean(current.labels == c) for c in classes])
    fig = Figure(figsize=(max(4.0, 0.6 * len(classes) + 2), 3), layout="constrained")
    ax = fig.subplots()
    at = np.arange(len(classes))
    ax.bar(at - 0.2, 100 * ref, 0.4, color=_REF, label="reference")
    ax.bar(at + 0.2, 100 * cur, 0.4, color=_CUR, label="current")
    ax.set_xticks(at, classes, rotation=30 if len(classes) > 6 else 0, ha="right")
    ax.set_ylabel("% of predictions")
    ax.set_title("predicted class mix")
    ax.legend()
    return fig


def _mmd_figure(null: np.ndarray, observed: float) -> Figure:
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.hist(null, bins=30, color=_REF, alpha=0.7, label="shuffled windows (no drift)")
    ax.axvline(observed, color=_CUR, linewidth=2, label="observed")
    ax.set_xlabel("MMD² between the windows")
    ax.set_title("embedding shift against its permutation null")
    ax.set_yticks([])
    ax.legend(fontsize=8)
    return fig
