"""The studio's jobs: training, audits, comparisons and exports, each in a worker process.

The server never trains: `JobManager.start` writes the job's folder and starts
`python -m imgrec.studio.worker JOB_FOLDER` in a session of its own, at a lower priority, so
the page stays quick while both cores work, and the worker outlives a restarted server. The
manager reads what the worker appends (jobfiles.py) and notices a worker that died without
a final status (killed, power cut): the job becomes "interrupted", and a training job can be
resumed from its last finished epoch.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from imgrec.bundle.run_folder import next_run_folder
from imgrec.studio.errors import StudioError
from imgrec.studio.jobfiles import (
    ACTIVE,
    EVENTS_FILE,
    FINAL,
    JOB_FILE,
    KINDS,
    LOG_FILE,
    append_event,
    empty_progress,
    epoch_row,
    fold,
    jobs_folder,
    now,
    public,
    read_events,
    read_job,
    record_in_run,
    write_job,
)
from imgrec.studio.joboptions import check_options, check_trainable

CANCEL_GRACE_SECONDS = 10.0  # a worker stops within a batch; then it is killed
BUSY = "a training job is already running in this project; wait for it or cancel it."
CANCELLED = "Cancelled; finished work is kept."
INTERRUPTED = {
    "train": "the job stopped unexpectedly (its worker process ended without finishing: the "
    "studio or the computer stopped); resume it to continue from the last finished epoch.",
    "other": "the job stopped unexpectedly (its worker process ended without finishing: the "
    "studio or the computer stopped); start it again.",
}


class JobManager:
    """Starts, lists, cancels and resumes the jobs of every project under `home`."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home).absolute()
        self.lock = threading.RLock()
        self.children: dict[int, subprocess.Popen] = {}  # workers this server started
        self.folds: dict[Path, tuple[int, dict, dict | None]] = {}  # offset, progress, status
        for job_json in sorted(self.home.glob(f"*/.studio/jobs/*/{JOB_FILE}")):
            with contextlib.suppress(StudioError):
                self._load(job_json.parent)  # a dead worker's job becomes interrupted now

    # -- the API ------------------------------------------------------------------------------

    def start(self, project_folder: Path, kind: str, options: dict) -> dict:
        """Check the request, write the job folder and start its worker; the Job, running."""
        project = Path(project_folder).absolute()
        if kind not in KINDS:
            raise StudioError(f"unknown job kind {kind!r:.40}; use one of {', '.join(KINDS)}.", 422)
        options = check_options(kind, options, project)
        if kind in ("train", "compare"):
            check_trainable(project)
        with self.lock:
            self._refuse_if_busy(project)
            folder = self._new_folder(project)
            job = {
                "id": folder.name,
                "kind": kind,
                "status": "queued",
                "options": options,
                "created": now(),
                "finished": None,
                "run": self._reserve_run(project, kind, options),
                "error": None,
            }
            write_job(folder, job)
            (folder / EVENTS_FILE).touch()
            return self._spawn(folder, job)

    def list(self, project_folder: Path) -> list[dict]:
        """Every job of the project, newest first, without events."""
        jobs = []
        for folder in self._job_folders(project_folder):
            with contextlib.suppress(StudioError):
                jobs.append(public(self._load(folder)))
        return sorted(jobs, key=lambda j: (j["created"] or "", j["id"]), reverse=True)

    def get(self, project_folder: Path, jid: str) -> dict:
        """One Job with all its events."""
        folder = self._folder(project_folder, jid)
        job = public(self._load(folder))
        job["events"] = read_events(folder)[0]
        return job

    def cancel(self, project_folder: Path, jid: str) -> dict:
        """Stop a queued or running job (SIGTERM to its worker's process group, SIGKILL after
        a grace period); its status becomes cancelled. Finished epochs stay for resume."""
        folder = self._folder(project_folder, jid)
        with self.lock:
            job = self._load(folder)
            if job["status"] not in ACTIVE:
                raise StudioError(
                    f"job {jid} is not running (it is {job['status']}); there is nothing to "
                    "cancel.",
                    409,
                )
        self._stop_worker(job)
        return public(self._load(folder, gone="cancelled"))

    def resume(self, project_folder: Path, jid: str) -> dict:
        """Continue a cancelled or interrupted training job in a new worker (same id): the
        run folder's checkpoints carry it on from the last finished epoch."""
        project = Path(project_folder).absolute()
        folder = self._folder(project, jid)
        with self.lock:
            job = self._load(folder)
            if job["kind"] != "train":
                raise StudioError(
                    f"only training jobs can be resumed; start a new {job['kind']} job instead.",
                    409,
                )
            if job["status"] not in ("cancelled", "interrupted"):
                raise StudioError(
                    f"job {jid} is {job['status']}; only a cancelled or interrupted training "
                    "job can be resumed.",
                    409,
                )
            self._refuse_if_busy(project)
            job["run"] = self._resumable_run(project, job)
            job.update(status="queued", finished=None, error=None, resume=True)
            write_job(folder, job)
            append_event(folder, {"type": "status", "status": "running", "message": "Resuming."})
            return self._spawn(folder, job)

    def poll(
        self, project_folder: Path, cursor: dict | None
    ) -> tuple[list[tuple[str, dict]], dict]:
        """News since `cursor` (None: every job's current state, no history): ("epoch", row)
        for each epoch finished since, then ("job", Job) for each job that changed. Reads only
        what the events files gained since the cursor; returns the next cursor."""
        with self.lock:
            self._reap()
        seen = None if cursor is None else cursor.get("jobs", {})
        news: list[tuple[str, dict]] = []
        marks: dict[str, dict] = {}
        for folder in self._job_folders(project_folder):
            with contextlib.suppress(StudioError):
                marks[folder.name] = self._poll_one(folder, seen, news)
        return news, {"jobs": marks}

    def shutdown(self) -> None:
        """The server stops; the workers go on (a restarted server finds them)."""
        with self.lock:
            for child in self.children.values():
                child.poll()  # reap the finished ones; the others keep running on their own
            self.children.clear()

    # -- reading a job -------------------------------------------------------------------------

    def _load(self, folder: Path, gone: str = "interrupted") -> dict:
        """job.json brought up to date: a final status the worker appended but did not write
        (it died in between) is written; a worker gone without one makes it `gone`
        (interrupted, or cancelled when it was stopped). `progress` is what the events add
        up to."""
        with self.lock:
            self._reap()
            job = read_job(folder)
            if job["status"] in ACTIVE:
                alive = self._alive(job)  # first: a worker that has ended appended all it will
                status = self._fold(folder)[2]
                if status is not None and status.get("status") in FINAL:
                    job["finished"] = status.get("time")
                    job = self._end(folder, job, status["status"], status.get("error"), None)
                elif not alive and gone == "cancelled":
                    job = self._end(folder, job, "cancelled", None, CANCELLED)
                elif not alive:
                    text = INTERRUPTED["train" if job["kind"] == "train" else "other"]
                    job = self._end(folder, job, "interrupted", text, text)
            job["progress"] = self._fold(folder)[1]
            return job

    def _fold(self, folder: Path) -> tuple[int, dict, dict | None]:
        """The progress (and latest status event) of a job, updated with only the events
        appended since the last look."""
        with self.lock:
            offset, progress, status = self.folds.get(folder, (0, empty_progress(), None))
            events, end = read_events(folder, offset)
            for event in events:
                progress = fold(progress, event)
                if event.get("type") == "status":
                    status = event
            self.folds[folder] = (end, progress, status)
            return self.folds[folder]

    def _poll_one(self, folder: Path, seen: dict | None, news: list) -> dict:
        mark = None if seen is None else seen.get(folder.name)
        if seen is None:  # the first look: the state now, nothing replayed
            with self.lock:
                job = self._load(folder)
                offset = self.folds[folder][0]  # the events that progress adds up
            news.append(("job", public(job)))
            return self._mark(folder, job, offset)
        offset = 0 if mark is None else mark["offset"]
        grown = _size(folder / EVENTS_FILE) > offset
        events, end = read_events(folder, offset) if grown else ([], offset)
        quiet = mark is not None and not events and not mark["active"]
        if quiet and _stamp(folder) == mark["stamp"]:
            return mark  # nothing new: two stats, no file read
        job = self._load(folder)
        news.extend(("epoch", epoch_row(e)) for e in events if e.get("type") == "epoch")
        if mark is None or events or _stamp(folder) != mark["stamp"]:
            news.append(("job", public(job)))
        return self._mark(folder, job, end)

    def _mark(self, folder: Path, job: dict, offset: int) -> dict:
        return {"offset": offset, "stamp": _stamp(folder), "active": job["status"] in ACTIVE}

    def _reap(self) -> None:
        """Collect the exit status of this server's finished workers (no zombies left)."""
        for pid, child in list(self.children.items()):
            if child.poll() is not None:
                del self.children[pid]

    def _alive(self, job: dict) -> bool:
        """Whether the job's worker is still running: the recorded process, not a newer one
        that happens to have its pid."""
        pid = job.get("pid")
        if pid is None:
            return False
        child = self.children.get(pid)
        if child is not None:
            return child.poll() is None  # also reaps it, so no zombie stays
        # not (or no longer) this server's child: the recorded process, if it still runs
        try:
            process = psutil.Process(pid)
            same = abs(process.create_time() - float(job.get("create_time") or 0)) < 0.05
            return same and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    # -- changing a job -----------------------------------------------------------------------

    def _spawn(self, folder: Path, job: dict) -> dict:
        """Start the worker (its own session, output into worker.log) and record it."""
        try:
            child = self._popen(folder)
        except OSError as exc:
            error = f"the worker process could not start ({exc.strerror or exc}); try again."
            self._end(folder, job, "failed", error, error)
            raise StudioError(error, 500) from exc
        self.children[child.pid] = child
        try:
            created = psutil.Process(child.pid).create_time()
        except psutil.Error:
            created = None  # already gone: the next look marks it interrupted
        job.update(status="running", pid=child.pid, create_time=created, started=now())
        job.pop("progress", None)
        write_job(folder, job)
        job["progress"] = self._fold(folder)[1]
        return public(job)

    def _popen(self, folder: Path) -> subprocess.Popen:
        with open(folder / LOG_FILE, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "imgrec.studio.worker", str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the server; cancel signals its group
                cwd=folder,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def _end(self, folder: Path, job: dict, status: str, error, message) -> dict:
        """Write a final status the worker could not write itself."""
        job = {**job, "status": status, "finished": job.get("finished") or now(), "error": error}
        job.pop("progress", None)
        write_job(folder, job)
        if message is not None:
            append_event(folder, {"type": "status", "status": status, "message": message})
        _, progress, _ = self._fold(folder)
        record_in_run(folder.parents[2], {**job, "progress": progress})
        return job

    def _stop_worker(self, job: dict) -> None:
        """SIGTERM to the worker's process group, then wait; SIGKILL if it will not stop."""
        if not self._alive(job):
            return
        _signal_group(job["pid"], signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while self._alive(job) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._alive(job):
            _signal_group(job["pid"], signal.SIGKILL)
            for _ in range(50):
                if not self._alive(job):
                    break
                time.sleep(0.1)

    def _refuse_if_busy(self, project: Path) -> None:
        for folder in self._job_folders(project):
            try:
                busy = self._load(folder)["status"] in ACTIVE
            except StudioError:
                continue  # a damaged record: it runs nothing
            if busy:
                raise StudioError(BUSY, 409)

    def _reserve_run(self, project: Path, kind: str, options: dict) -> str | None:
        """The run folder a job will write: runs/train-N or runs/compare-N, created empty now
        so that the next job picks another name; an export writes into the run it exports."""
        if kind == "export":
            return options["run"]
        if kind == "audit":
            return None
        folder = next_run_folder(project / "runs", kind)
        folder.mkdir(parents=True)
        return folder.name

    def _resumable_run(self, project: Path, job: dict) -> str:
        """The run folder a resumed job continues: its own, or a new one when another job has
        taken the name since (this one never wrote into it, and it was removed)."""
        run = project / "runs" / job["run"]
        owner = run / JOB_FILE
        try:
            taken = owner.is_file() and read_job(run).get("id") != job["id"]
        except StudioError:
            taken = True
        if taken:
            return self._reserve_run(project, "train", {})
        run.mkdir(parents=True, exist_ok=True)
        return job["run"]

    # -- folders ------------------------------------------------------------------------------

    def _new_folder(self, project: Path) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")[:-3]
        folder = jobs_folder(project) / f"{stamp}-{secrets.token_hex(2)}"
        folder.mkdir(parents=True)
        return folder

    def _job_folders(self, project: Path) -> list[Path]:
        """The project's job folders, oldest first (their names start with the time)."""
        root = jobs_folder(Path(project).absolute())
        if not root.is_dir():
            return []
        return sorted(p for p in root.iterdir() if (p / JOB_FILE).is_file())

    def _folder(self, project: Path, jid: str) -> Path:
        if not jid or jid != Path(jid).name or jid.startswith("."):
            raise StudioError(f"there is no job {jid!r:.40} in this project.", 404)
        folder = jobs_folder(Path(project).absolute()) / jid
        if not (folder / JOB_FILE).is_file():
            raise StudioError(f"there is no job {jid[:40]} in this project.", 404)
        return folder


def _stamp(folder: Path) -> list[int]:
    """What tells that job.json changed, without reading it."""
    try:
        info = os.stat(folder / JOB_FILE)
    except FileNotFoundError:
        return [0, 0]
    return [info.st_mtime_ns, info.st_size]


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _signal_group(pid: int, signum: int) -> None:
    """Signal the worker's process group (it leads one: start_new_session), else itself."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass
