"""The run folder: what each file is called, writing its settings, and reading it back.

Every job (train, retrain, compare, tune) writes the same files under the same names, so the
names live here and nowhere else. Reading a run back (for a model card, a retrain) checks the
files once: a missing or damaged file ends in one sentence that names it, instead of a card
with holes.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgrec.bundle.format import read_metadata
from imgrec.errors import ImgrecError

MODEL_FILE = "model.imgrec"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
REQUIRED = (MODEL_FILE, METRICS_FILE, CONFIG_FILE)


@dataclass(frozen=True)
class RunFiles:
    """The path of every file a run folder may hold."""

    folder: Path

    @property
    def model(self) -> Path:
        return self.folder / MODEL_FILE  # the trained model (safetensors + JSON metadata)

    @property
    def config(self) -> Path:
        return self.folder / CONFIG_FILE  # the settings and the data source: what --resume reads

    @property
    def metrics(self) -> Path:
        return self.folder / METRICS_FILE

    @property
    def split(self) -> Path:
        return self.folder / "split.csv"  # every image and its split

    @property
    def predictions(self) -> Path:
        return self.folder / "predictions.csv"  # every scored image: label, prediction, probs

    @property
    def audit(self) -> Path:
        return self.folder / "audit.json"

    @property
    def skipped(self) -> Path:
        return self.folder / "skipped.csv"  # unreadable images and why

    @property
    def history(self) -> Path:
        return self.folder / "history.csv"  # one row per epoch of either phase

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"  # what an interrupted run resumes from

    @property
    def lr_find(self) -> Path:
        return self.folder / "lr_find.png"

    @property
    def card_markdown(self) -> Path:
        return self.folder / "model_card.md"

    @property
    def card_html(self) -> Path:
        return self.folder / "model_card.html"


def write_config(folder: Path, config: dict, source: str | Path) -> None:
    """config.json: the run's settings plus its data source (an absolute path, or the URL
    of object storage as given), what --resume needs."""
    from imgrec.data.remote import is_url, url_text

    where = url_text(source) if is_url(source) else str(Path(source).resolve())
    document = {**config, "source": where}
    RunFiles(folder).config.write_text(json.dumps(document, indent=2), encoding="utf-8")


def read_config(folder: Path) -> dict:
    """config.json of a run folder (settings plus "source"); ImgrecError when missing."""
    path = RunFiles(folder).config
    if not path.is_file():
        raise ImgrecError(f"nothing to resume in {folder}: it holds no {CONFIG_FILE}.")
    return _json(path)


_METRIC_KEYS = ("n", "accuracy", "balanced_accuracy", "per_class", "confusion_matrix", "classes")


@dataclass
class RunFolder:
    """What `imgrec train` left in a run folder (optional files are None when absent)."""

    folder: Path
    metadata: dict
    metrics: dict
    config: dict
    split_counts: dict[str, dict[str, int]] | None = None  # split -> class -> images
    audit: dict | None = None
    skipped: int = 0
    groups: dict | None = None
    groups_from: Path | None = None
    extra_columns: list[str] = field(default_factory=list)  # the training CSV's attributes

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE


def read_run_folder(folder: str | Path, metadata: dict | None = None) -> RunFolder:
    """Load and check a run folder; raise ImgrecError naming what is missing or damaged.

    `metadata` stands in for the model file's when the run is read before its model file is
    written (a job builds the model card first, to write the model file once)."""
    folder = Path(folder)
    if not folder.exists():
        raise ImgrecError(f"{folder} does not exist; give the folder of a run (runs/train).")
    if not folder.is_dir():
        raise ImgrecError(
            f"{folder} is a file; give the run folder that holds it (e.g. {folder.parent})."
        )
    required = REQUIRED if metadata is None else (METRICS_FILE, CONFIG_FILE)
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise ImgrecError(
            f"{folder} is not a finished run folder: it lacks {', '.join(missing)} "
            "(imgrec train writes model.imgrec, metrics.json and config.json)."
        )
    folder = folder.resolve()  # the card names it, and its reproduce command must work anywhere
    files = RunFiles(folder)
    metrics = _json(files.metrics)
    if not _overall_metrics_ok(metrics):
        raise ImgrecError(
            f"{files.metrics} is damaged (it lacks the overall metrics); "
            "re-run imgrec train to write it again."
        )
    if metadata is None:
        metadata = read_metadata(files.model)
    run = RunFolder(folder, metadata, metrics, _json(files.config))
    if files.split.is_file():
        run.split_counts = _split_counts(files.split)
    if files.audit.is_file():
        run.audit = _json(files.audit)
    if files.skipped.is_file():
        run.skipped = max(0, len(_csv_rows(files.skipped)) - 1)
    run.groups, run.groups_from = _groups(folder, metrics)
    run.extra_columns = _csv_columns(run.config.get("source"))
    return run


def _overall_metrics_ok(metrics: dict) -> bool:
    if not all(key in metrics for key in _METRIC_KEYS):
        return False
    classes, cm = metrics["classes"], metrics["confusion_matrix"]
    return (
        isinstance(classes, list)
        and isinstance(cm, list)
        and len(cm) == len(classes)
        and all(isinstance(row, list) and len(row) == len(classes) for row in cm)
        and isinstance(metrics["n"], int)
        and metrics["n"] > 0
    )


def _groups_ok(groups) -> bool:
    keys = ("columns", "confidence", "resamples", "min_group_size")
    return isinstance(groups, dict) and all(k in groups for k in keys)


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImgrecError(
            f"{path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "re-run the command that wrote it."
        ) from exc
    if not isinstance(data, dict):
        raise ImgrecError(
            f"{path} is damaged (not a JSON object); re-run the command that wrote it."
        )
    return data


def _csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ImgrecError(f"{path} is damaged ({exc}); re-run imgrec train.") from exc


def _split_counts(path: Path) -> dict[str, dict[str, int]]:
    rows = _csv_rows(path)
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "label" not in header or "split" not in header:
        raise ImgrecError(f"{path} is damaged (no label and split columns); re-run imgrec train.")
    label, split = header.index("label"), header.index("split")
    counts: dict[str, Counter] = {}
    for row in rows[1:]:
        if len(row) > max(label, split):
            counts.setdefault(row[split], Counter())[row[label]] += 1
    return {name: dict(sorted(c.items())) for name, c in counts.items()}


def _groups(folder: Path, metrics: dict) -> tuple[dict | None, Path | None]:
    """Per-group results: the run's own metrics.json, else the newest `imgrec evaluate
    --group-by` result inside the run folder (eval-*/metrics.json)."""
    found = sorted(folder.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path, groups in [(RunFiles(folder).metrics, metrics.get("groups"))] + [
        (p, _json(p).get("groups")) for p in found
    ]:
        if groups and not _groups_ok(groups):
            raise ImgrecError(
                f"{path} is damaged (its per-group results are incomplete); run imgrec "
                "evaluate --group-by again."
            )
        if groups:
            return groups, path
    return None, None


def _csv_columns(source: str | None) -> list[str]:
    """Extra columns of the training CSV (attributes nobody has evaluated yet), if any."""
    if not source or not str(source).lower().endswith(".csv"):
        return []
    try:
        with open(source, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [
        h.strip()
        for h in header
        if h.strip() and h.strip().lower() not in {"path", "label", "split"}
    ]


def next_run_folder(base: Path = Path("runs"), name: str = "train") -> Path:
    """runs/train, runs/train-2, ... like Ultralytics, so runs never overwrite each other (here,
    below the training stack, so that imgrec studio names runs without loading torch)."""
    candidate, n = base / name, 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{n}"
    return candidate
