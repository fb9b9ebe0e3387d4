"""`python -m imgrec.studio.worker JOB_FOLDER`: one studio job, in a process of its own.

The server starts this (jobs.py) so that training never blocks the page, and so that a
restarted server finds its worker still training. The worker calls the library, exactly as
the CLI does (train_run, audit_dataset, compare, export_model), and reports what happens as
events appended to the job folder's events.jsonl; at the end it writes the final status into
job.json. SIGTERM (the Cancel button) stops it the way Ctrl-C stops `imgrec train`: finished
epochs stay on disk, so the job can resume.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imgrec.bundle.run_folder import RunFiles
from imgrec.errors import ImgrecError
from imgrec.studio.jobfiles import (
    append_event,
    epoch_row,
    now,
    progress_of,
    read_job,
    record_in_run,
    write_job,
    write_json,
)
from imgrec.studio.joboptions import EXPORT_FILES, train_config
from imgrec.studio.journal import plural

# The phases of a training run, in order; the page shows the latest.
PHASE_ORDER = {
    "Preparing images": 0,
    "Checking data": 1,
    "Training the head": 2,
    "Training the model": 2,  # a scikit-learn learner on fixed features: no head, no epochs
    "Fine-tuning": 3,
    "Evaluating": 4,
    "Writing the report": 5,
}
ROW_PHASES = {"head": "Training the head", "search": "Training the model"}
WATCH_SECONDS = 0.5


class Events:
    """Appends a job's events; a phase of a training run only ever moves forward."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.current: str | None = None
        self.lock = threading.Lock()  # the watcher thread reports phases too

    def emit(self, event: dict) -> None:
        append_event(self.folder, event)

    def phase(self, name: str) -> bool:
        """Report phase `name` unless the run is already in it or past it."""
        with self.lock:
            rank, current = PHASE_ORDER.get(name), PHASE_ORDER.get(self.current or "")
            if name == self.current or (None not in (rank, current) and rank <= current):
                return False
            self.current = name
            self.emit({"type": "phase", "phase": name})
            return True

    def message(self, text: str) -> None:
        self.emit({"type": "message", "message": str(text)})


class TrainTracker:
    """Turns train_run's callbacks (and the files it writes) into the page's events."""

    def __init__(self, events: Events, folder: Path, config, started: float) -> None:
        self.events, self.config, self.started = events, config, started
        self.files = RunFiles(folder)
        self.durations: dict[str, list[float]] = {}
        self.last_seconds: float | None = None
        self.planned: int | None = None

    def on_audit(self, audit) -> None:
        self.events.phase("Checking data")
        summary = audit.summary()[0]
        self.events.message(f"{summary}. {audit.verdict()}" if audit.issues_found() else summary)

    def on_plan(self, reason: str) -> None:
        self.events.message(reason)
        epochs = self._plan_epochs()
        if epochs:
            self._start_finetune(epochs)

    def on_epoch(self, row: dict) -> None:
        phase = row.get("phase")
        if phase == "finetune":
            self._start_finetune(self._plan_epochs())
        else:
            self.events.phase(ROW_PHASES.get(phase, "Training the head"))
        seconds = float(row.get("seconds") or 0.0)
        if self.last_seconds is not None:
            self.durations.setdefault(phase, []).append(max(0.0, seconds - self.last_seconds))
        self.last_seconds = seconds
        eta = None
        if phase == "finetune" and self.planned and self.durations.get(phase):
            spent = self.durations[phase]
            eta = round(sum(spent) / len(spent) * max(0, self.planned - int(row["epoch"])), 1)
        self.events.emit({"type": "epoch", **_row(row), "epochs": self.planned, "eta_s": eta})

    def _start_finetune(self, epochs: int | None) -> None:
        if epochs:
            self.planned = epochs
        if self.events.phase("Fine-tuning") and self.planned:
            self.events.emit({"type": "epochs", "phase": "finetune", "epochs": self.planned})

    def _plan_epochs(self) -> int | None:
        """Fine-tuning's planned epochs, as the fit wrote them (checkpoints/phases.json)."""
        plan = self._phases().get("finetune", {}).get("plan") or {}
        return plan.get("epochs")

    def _phases(self) -> dict:
        from imgrec.train.fit import PHASES_FILE

        try:
            return json.loads((self.files.checkpoints / PHASES_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def fit_done(self) -> bool:
        """Whether the fit is over (this worker's fit: its split.csv is newer than the
        worker), read from the work folder: fine-tuning's time recorded, or the head's when
        no epochs follow, or a scikit-learn learner's chosen estimator saved."""
        split = self.files.split
        if not split.is_file() or split.stat().st_mtime < self.started - 1.0:
            return False
        phases = self._phases()
        if "seconds" in phases.get("finetune", {}):
            return True
        if self.config.epochs == 0 and "seconds" in phases.get("head", {}):
            return True
        from imgrec.models.families import get_family

        sklearn = get_family(self.config.model).traits.sklearn
        return sklearn and (self.files.checkpoints / "best.json").is_file()

    def look(self) -> None:
        """One look at the run folder for the phases no callback reports."""
        metrics = self.files.metrics
        if metrics.is_file() and metrics.stat().st_mtime >= self.started - 1.0:
            self.events.phase("Writing the report")
        elif self.fit_done():
            self.events.phase("Evaluating")

    @contextmanager
    def watching(self) -> Iterator[None]:
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(WATCH_SECONDS):
                try:
                    self.look()
                except Exception:  # a file caught mid-write: look again next time
                    continue

        thread = threading.Thread(target=watch, name="imgrec-studio-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _row(row: dict) -> dict:
    """The epoch event's fields (jobfiles.EPOCH_FIELDS), its seconds rounded."""
    seconds = row.get("seconds")
    return epoch_row(row) | {"seconds": None if seconds is None else round(float(seconds), 2)}


def run_train(job: dict, project: Path, events: Events) -> dict:
    """`imgrec train project/data` with the job's options, into runs/<run>; a resumed job
    continues its run folder from the last finished epoch."""
    from imgrec.bundle.run_folder import read_config
    from imgrec.config import TrainConfig
    from imgrec.runs.train import train_run

    folder = project / "runs" / job["run"]
    resume = bool(job.get("resume")) and RunFiles(folder).config.is_file()
    config = TrainConfig.from_dict(read_config(folder)) if resume else train_config(job["options"])
    tracker = TrainTracker(events, folder, config, time.time())
    events.phase("Preparing images")
    if resume:
        events.message("Continuing from the last finished epoch.")
    with tracker.watching():
        result = train_run(
            None if resume else project / "data",
            folder,
            config,
            resume=resume,
            exist_ok=bool(job.get("resume")),  # a resumed job that never saved: start again
            progress=False,
            on_audit=tracker.on_audit,
            on_plan=tracker.on_plan,
            on_epoch=tracker.on_epoch,
        )
    events.phase("Writing the report")  # when it went too fast for the watcher to see
    m = result.evaluation.metrics
    unseen = " the model never trained on" if result.evaluated_on == "test" else ""
    return {
        "accuracy": m["accuracy"],
        "message": f"Done: {m['accuracy']:.1%} accuracy on "
        f"{plural(m['n'], f'{result.evaluated_on} image')}{unseen}.",
    }


def run_audit(job: dict, project: Path, events: Events) -> dict:
    """`imgrec audit` of project/data, with embeddings; the report replaces the last one in
    .studio/audit/ (audit.json, audit.html, and summary.json: its verdict and summary)."""
    from imgrec.audit.report import save_audit
    from imgrec.audit.run import audit_dataset
    from imgrec.data.dataset import load_dataset

    events.phase("Checking data")
    result = audit_dataset(load_dataset(project / "data"), embeddings=True)
    target = project / ".studio" / "audit"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".audit-", dir=target.parent) as tmp:
        save_audit(result, tmp)
        summary = {"verdict": result.verdict(), "summary": result.summary(), "created": now()}
        write_json(Path(tmp) / "summary.json", summary)
        for name in ("audit.json", "audit.html", "summary.json"):
            os.replace(Path(tmp) / name, target / name)
    return {"message": result.verdict()}


def run_compare(job: dict, project: Path, events: Events) -> dict:
    """`imgrec compare project/data --budget B` into runs/compare-N."""
    from imgrec.runs.compare import compare

    events.phase("Comparing models")
    board = compare(
        project / "data",
        project / "runs" / job["run"],
        budget=job["options"]["budget"],
        progress=False,
        say=events.message,
    )
    ranked = board.ranked()
    if not ranked:
        raise ImgrecError(
            "no model family finished within the budget; give the comparison more time."
        )
    best = ranked[0]
    return {
        "accuracy": best.accuracy,
        "message": f"Done: {best.family} is best with {best.accuracy:.1%} accuracy on the "
        f"{board.evaluated_on} split.",
    }


def run_export(job: dict, project: Path, events: Events) -> dict:
    """`imgrec export` of a run's model.imgrec to ONNX (optionally int8) inside the run
    folder, checked on the project's own photos."""
    from imgrec.export.run import export_model

    fmt = job["options"]["format"]
    run = project / "runs" / job["options"]["run"]
    events.phase("Exporting")
    done = export_model(
        RunFiles(run).model,
        "onnx",
        run / EXPORT_FILES[fmt],
        int8=fmt == "onnx-int8",
        calibration=project / "data",
        say=events.message,
    )
    return {"message": f"Done: exported {done.path.name}."}


RUNNERS: dict[str, Callable[[dict, Path, Events], dict]] = {
    "train": run_train,
    "audit": run_audit,
    "compare": run_compare,
    "export": run_export,
}


class Cancel:
    """SIGTERM handler: remembers the request and stops the work as Ctrl-C would."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            return  # already stopping: let the checkpoints be written
        self.requested = True
        raise KeyboardInterrupt


def outcome(exc: BaseException, cancelled: bool) -> dict:
    """The final status of a job that raised `exc`."""
    if cancelled or isinstance(exc, KeyboardInterrupt):
        return {"status": "cancelled", "message": "Cancelled; finished work is kept."}
    if isinstance(exc, ImgrecError):
        return {"status": "failed", "error": str(exc), "message": str(exc)}
    traceback.print_exception(exc)  # into worker.log
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
    error = (
        f"the job failed: {type(exc).__name__}: {text}; worker.log in the job folder has the "
        "details."
    )
    return {"status": "failed", "error": error, "message": error}


def finish(folder: Path, project: Path, status: dict) -> None:
    """The final status: first as an event (what the page sees), then in job.json, then in
    the run folder's copy of the record."""
    append_event(folder, {"type": "status", **status})
    job = read_job(folder)
    job.update(status=status["status"], finished=now(), error=status.get("error"))
    write_job(folder, job)
    record_in_run(project, {**job, "progress": progress_of(folder)})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m imgrec.studio.worker JOB_FOLDER", file=sys.stderr)
        return 2
    cancel = Cancel()
    signal.signal(signal.SIGTERM, cancel)
    os.nice(10)  # below the server, so the page answers at once while both cores train
    folder = Path(args[0]).resolve()
    project = folder.parents[2]  # project/.studio/jobs/<jid>
    job = read_job(folder)
    events = Events(folder)
    try:
        status = {"status": "done", **RUNNERS[job["kind"]](job, project, events)}
        status["run"] = job.get("run")
    except BaseException as exc:  # every way out is a status the page can show
        status = outcome(exc, cancel.requested)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # too late to cancel: the status is final
    finish(folder, project, status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
