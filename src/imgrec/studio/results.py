"""What the Results, Check-data and Compare tabs show, read from the files jobs leave behind.

Everything here is read from disk (metrics.json, predictions.csv, config.json, the audit's
audit.json, a comparison's leaderboard.json), so a run made by `imgrec train` on the same
folder shows exactly like one made by the Train button. The figures are the library's own:
the accuracy interval is evaluate/intervals.py's Wilson interval, as the model card gives
it, and the calibration sentence is the report's.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from imgrec.studio.errors import StudioError
from imgrec.studio.jobfiles import JOB_FILE, jobs_folder
from imgrec.studio.projects import image_url, thumb_url
from imgrec.text import csv_value

RUN_FILES = (
    "report.html",
    "model_card.html",
    "model.imgrec",
    "model.onnx",
    "model-int8.onnx",
    "predictions.csv",
)
COMPARE_FILES = ("leaderboard.json", "leaderboard.csv", "leaderboard.png")
DUPLICATE_CHECKS = {
    "exact_duplicate",
    "near_duplicate",
    "label_conflict",
    "near_label_conflict",
    "leakage",
}
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
MAX_LIMIT = 1000


# -- runs ---------------------------------------------------------------------------------------


def list_runs(project_folder: Path) -> list[dict]:
    """Every run folder of the project, newest first: {id, created, model, accuracy, status,
    kind}; a run still training (or one that failed) has no accuracy."""
    project = Path(project_folder)
    runs = project / "runs"
    if not runs.is_dir():
        return []
    jobs = _jobs_by_run(project)
    found = [
        _summary(folder, jobs.get(folder.name))
        for folder in runs.iterdir()
        if folder.is_dir() and not folder.name.startswith(".")
    ]
    return sorted(found, key=lambda r: (r["created"] or "", r["id"]), reverse=True)


def run_results(project_folder: Path, rid: str) -> dict:
    """The Results tab of one run: accuracy with its 95% interval, per-class table,
    confusion matrix, calibration sentence, phases and files. Without metrics.json (still
    training, failed) only the status and no numbers."""
    from imgrec.evaluate.intervals import wilson_interval
    from imgrec.evaluate.phases import phase_rows
    from imgrec.evaluate.report import calibration_reading

    project = Path(project_folder)
    folder = _run_folder(project, rid)
    metrics = _json(folder / "metrics.json")
    summary = _summary(folder, _jobs_by_run(project).get(rid), metrics)
    answer = {**summary, "files": _files(project.name, folder)}
    if not metrics or "accuracy" not in metrics or "confusion_matrix" not in metrics:
        return {**answer, "accuracy": None}
    matrix, classes = metrics["confusion_matrix"], metrics.get("classes", [])
    n = int(metrics["n"])
    interval = wilson_interval(sum(int(matrix[i][i]) for i in range(len(matrix))), n)
    per_class = metrics.get("per_class", {})
    return {
        **answer,
        "accuracy": metrics["accuracy"],
        "interval": list(interval) if interval else None,
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "n": n,
        "evaluated_on": (metrics.get("phases") or {}).get("evaluation", {}).get("split"),
        "per_class": [{"class": c, **per_class.get(c, {})} for c in classes],
        "confusion": {"classes": classes, "matrix": matrix},
        "calibration": calibration_reading(metrics.get("calibration")),
        "phases": [
            {"phase": phase, "time": time, "added": added}
            for phase, time, added in phase_rows(metrics.get("phases"))
        ],
    }


def confusion_images(project_folder: Path, rid: str, actual: str, predicted: str) -> list[dict]:
    """The images behind one cell of the confusion matrix, most confident first."""
    project = Path(project_folder)
    rows = _predictions(project, rid)
    classes = {row["actual"] for row in rows} | {row["predicted"] for row in rows}
    classes |= set((_json(project / "runs" / rid / "metrics.json") or {}).get("classes", []))
    for name in (actual, predicted):
        if name not in classes:
            raise StudioError(f"run {rid} has no class '{name[:60]}'.", 404)
    chosen = [r for r in rows if r["actual"] == actual and r["predicted"] == predicted]
    return [_image(project, r) for r in sorted(chosen, key=lambda r: -r["confidence"])]


def wrong_images(project_folder: Path, rid: str, limit: int = 24) -> list[dict]:
    """The images the model got wrong, most confidently wrong first (often a wrong label)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise StudioError(f"limit must be between 1 and {MAX_LIMIT}.", 422)
    project = Path(project_folder)
    wrong = [r for r in _predictions(project, rid) if r["actual"] != r["predicted"]]
    wrong.sort(key=lambda r: -r["confidence"])
    return [_image(project, r) for r in wrong[:limit]]


def leaderboard(project_folder: Path) -> dict | None:
    """The latest comparison's leaderboard.json (plus its run's name), or None."""
    runs = Path(project_folder) / "runs"
    boards = sorted(
        runs.glob("*/leaderboard.json") if runs.is_dir() else [],
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in boards:
        board = _json(path)
        if board is not None:
            return {**board, "run": path.parent.name}
    return None


def _summary(folder: Path, job: dict | None, metrics: dict | None = None) -> dict:
    """{id, created, model, accuracy, status, kind} of one run folder: the job that made it
    says its kind and status (its record in the run folder when no job of this studio
    does); else a folder with results is done. `metrics`: its metrics.json, when the caller
    has read it already."""
    record = job or _json(folder / JOB_FILE) or {}
    board = _json(folder / "leaderboard.json")
    kind = "compare" if board is not None or record.get("kind") == "compare" else "train"
    metrics = (metrics if metrics is not None else _json(folder / "metrics.json")) or {}
    model = (_json(folder / "config.json") or {}).get("model")
    accuracy = metrics.get("accuracy")
    if board is not None:
        best = next((e for e in board.get("entries", []) if e.get("status") == "ok"), None)
        model, accuracy = (best["family"], best["accuracy"]) if best else (None, None)
    finished = "accuracy" in metrics or board is not None
    return {
        "id": folder.name,
        "created": record.get("created") or _mtime(folder),
        "model": model,
        "accuracy": accuracy,
        "status": record.get("status") or ("done" if finished else "incomplete"),
        "kind": kind,
    }


def _jobs_by_run(project: Path) -> dict[str, dict]:
    """run name -> the latest train or compare job that wrote it."""
    found: dict[str, dict] = {}
    root = jobs_folder(project)
    for path in sorted(root.glob(f"*/{JOB_FILE}")) if root.is_dir() else []:
        job = _json(path)
        if job and job.get("kind") in ("train", "compare") and job.get("run"):
            found[job["run"]] = job  # oldest first, so the latest wins
    return found


def _files(pid: str, folder: Path) -> dict[str, str]:
    from urllib.parse import quote

    names = [n for n in (*RUN_FILES, *COMPARE_FILES) if (folder / n).is_file()]
    base = f"/api/projects/{quote(pid, safe='')}/runs/{quote(folder.name, safe='')}/files"
    return {name: f"{base}/{name}" for name in names}


def _run_folder(project: Path, rid: str) -> Path:
    folder = project / "runs" / rid
    if not rid or rid != Path(rid).name or rid.startswith(".") or not folder.is_dir():
        raise StudioError(f"there is no run '{rid[:60]}' in this project.", 404)
    return folder


def _predictions(project: Path, rid: str) -> list[dict]:
    """predictions.csv of a run: {path, actual, predicted, confidence} per scored image."""
    path = _run_folder(project, rid) / "predictions.csv"
    if not path.is_file():
        raise StudioError(
            f"run {rid} has no predictions.csv (it is still training, failed, or was made "
            "before imgrec wrote one); train again to see its images.",
            404,
        )
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [
                {
                    "path": csv_value(row["path"]),
                    "actual": csv_value(row["actual"]),
                    "predicted": csv_value(row["predicted"]),
                    "confidence": float(row["confidence"]),
                }
                for row in csv.DictReader(f)
            ]
    except (OSError, KeyError, ValueError, TypeError, csv.Error) as exc:
        raise StudioError(
            f"run {rid}'s predictions.csv is damaged ({type(exc).__name__}); train again.", 500
        ) from exc


def _image(project: Path, row: dict) -> dict:
    return {
        **_ref(project, row["path"]),
        "actual": row["actual"],
        "predicted": row["predicted"],
        "confidence": row["confidence"],
    }


def _ref(project: Path, path: str) -> dict:
    """An image of the project by the path a run or audit recorded: {cls, name, url, thumb,
    missing} (missing: moved or deleted since)."""
    data = project / "data"
    recorded = Path(path)
    try:
        parts = recorded.relative_to(data).parts
    except ValueError:
        parts = recorded.parts[-2:]  # the project moved since: data/<class>/<name> still
    cls, name = (parts[0], parts[-1]) if len(parts) >= 2 else ("", recorded.name)
    pid = project.name
    return {
        "cls": cls,
        "name": name,
        "url": image_url(pid, cls, name),
        "thumb": thumb_url(pid, cls, name),
        "missing": not (data / cls / name).is_file(),
    }


# -- the audit ------------------------------------------------------------------------------------


def audit_cards(project_folder: Path, kept: dict[str, set[tuple[str, str]]]) -> dict | None:
    """The latest audit (.studio/audit/) as the Check-data tab shows it: one card per check
    that found something, errors first, each image with its detail (and, for copies, the
    other members of its group); images kept for a check are left out of its card. None
    when the project was never checked."""
    project = Path(project_folder)
    folder = project / ".studio" / "audit"
    audit = _json(folder / "audit.json")
    if audit is None:
        return None
    about = _json(folder / "summary.json") or {}
    groups = _groups(audit)
    by_check: dict[str, list[dict]] = {}
    for finding in audit.get("findings", []):
        by_check.setdefault(finding.get("check"), []).append(finding)
    cards = []
    for check, info in (audit.get("checks") or {}).items():
        images = [
            _finding_image(project, f, groups)
            for f in by_check.get(check, [])
            if (_ref_key(project, f["path"])) not in kept.get(check, set())
        ]
        shown = images or (check == "imbalance" and (audit.get("counts") or {}).get(check))
        if shown:
            cards.append({"check": check, **_card_text(info), "images": images})
    cards.sort(key=lambda c: SEVERITY_ORDER.get(c["severity"], 3))
    return {
        "verdict": about.get("verdict"),
        "summary": about.get("summary", []),
        "created": about.get("created") or _mtime(folder / "audit.json"),
        "cards": cards,
    }


def _card_text(info: dict) -> dict:
    return {k: info.get(k) for k in ("title", "severity", "advice")}


def _groups(audit: dict) -> dict[str, list[str]]:
    """path -> the paths of the other members of its duplicate group."""
    others: dict[str, list[str]] = {}
    for group in audit.get("duplicate_groups", []):
        paths = [f["path"] for f in group.get("files", [])]
        for path in paths:
            others.setdefault(path, []).extend(p for p in paths if p != path)
    return others


def _finding_image(project: Path, finding: dict, groups: dict[str, list[str]]) -> dict:
    image = {
        **_ref(project, finding["path"]),
        "detail": finding.get("detail"),
        "score": finding.get("score"),
    }
    if finding.get("check") in DUPLICATE_CHECKS:
        image["partners"] = [_ref(project, p) for p in groups.get(finding["path"], [])]
    return image


def _ref_key(project: Path, path: str) -> tuple[str, str]:
    ref = _ref(project, path)
    return ref["cls"], ref["name"]


# -- files ----------------------------------------------------------------------------------------


def _json(path: Path) -> dict | None:
    """A JSON object from disk, or None when it is missing or not (yet) whole."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _mtime(path: Path) -> str | None:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
