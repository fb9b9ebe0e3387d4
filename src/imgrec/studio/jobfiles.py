"""A studio job's folder, the one format the server and the worker process share.

project/.studio/jobs/<jid>/ holds job.json (the job's record, always replaced whole, so a
reader never sees half of it), events.jsonl (one JSON object per line, only ever appended:
phases, epoch rows, messages, status changes) and worker.log (the worker's own output).
The job's live `progress` is not stored anywhere: it is what the events add up to (`fold`),
so a worker never has to rewrite job.json while it trains.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path

from imgrec.studio.errors import StudioError

JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "worker.log"
KINDS = ("train", "audit", "compare", "export")
ACTIVE = frozenset({"queued", "running"})
FINAL = frozenset({"done", "failed", "cancelled", "interrupted"})
PUBLIC = ("id", "kind", "status", "options", "created", "finished", "run", "error", "progress")
EPOCH_FIELDS = ("phase", "epoch", "train_loss", "val_loss", "val_acc", "seconds")


def now() -> str:
    """The studio's timestamps: ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def jobs_folder(project: Path) -> Path:
    return Path(project) / ".studio" / "jobs"


def read_job(folder: Path) -> dict:
    """job.json of a job folder; 404 when there is none (an unknown job id)."""
    try:
        return json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudioError(f"there is no job {folder.name} in this project.", 404) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StudioError(
            f"the record of job {folder.name} is damaged ({type(exc).__name__}); start the job "
            "again.",
            500,
        ) from exc


def write_job(folder: Path, job: dict) -> None:
    """Replace job.json atomically (a temporary file, then os.replace)."""
    write_json(folder / JOB_FILE, job)


def write_json(path: Path, document: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def public(job: dict) -> dict:
    """The Job the API answers with (the pid and other bookkeeping left out)."""
    return {key: job.get(key) for key in PUBLIC}


def clean(value):
    """JSON that browsers accept: NaN and infinities (a loss not measured) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def append_event(folder: Path, event: dict) -> None:
    """Append one event as one line, in one write() on an O_APPEND file, so the worker and the
    manager can both append without interleaving."""
    line = json.dumps(clean({"time": now(), **event}), allow_nan=False) + "\n"
    fd = os.open(folder / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_events(folder: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The complete event lines after byte `offset`, and the offset after the last of them
    (a line being written is left for the next read)."""
    try:
        with open(folder / EVENTS_FILE, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a power cut: skip it, keep the rest
    return events, offset + end


def epoch_row(event: dict) -> dict:
    """The history row the page's chart takes from an epoch event."""
    return {key: event.get(key) for key in EPOCH_FIELDS}


def empty_progress() -> dict:
    return {
        "phase": None,
        "epoch": None,
        "epochs": None,
        "val_acc": None,
        "loss": None,
        "eta_s": None,
        "message": None,
    }


def fold(progress: dict, event: dict) -> dict:
    """The progress after one more event: a phase starts afresh (its epochs unknown), an
    epoch row sets the figures, a message or status replaces the message."""
    kind = event.get("type")
    if kind == "phase":
        return {**progress, "phase": event["phase"], "epoch": None, "epochs": None, "eta_s": None}
    if kind == "epochs":
        return {**progress, "epochs": event.get("epochs")}
    if kind == "epoch":
        return {
            **progress,
            "epoch": event.get("epoch"),
            "val_acc": event.get("val_acc"),
            "loss": event.get("train_loss"),
            "eta_s": event.get("eta_s"),
        }
    if kind in ("message", "status") and event.get("message"):
        return {**progress, "message": event["message"]}
    return progress


def progress_of(folder: Path) -> dict:
    """The progress all of a job's events add up to."""
    progress = empty_progress()
    for event in read_events(folder)[0]:
        progress = fold(progress, event)
    return progress


def record_in_run(project: Path, job: dict) -> None:
    """When a train or compare job ends: its record goes into its run folder too
    (runs/<run>/job.json, what docs/studio.md promises), and a run folder the job reserved
    but never wrote into is removed."""
    if job.get("kind") not in ("train", "compare") or not job.get("run"):
        return
    run = Path(project) / "runs" / job["run"]
    if not run.is_dir():
        return
    if not any(run.iterdir()):
        run.rmdir()
        return
    write_json(run / JOB_FILE, public(job))
