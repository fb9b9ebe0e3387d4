"""imgrec studio's jobs: real worker processes started, refused, failed, cancelled, resumed,
killed, and the poll() cursor the server-sent events stream reads."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest
from runhelpers import copy_files, sample_files

from imgrec.studio.errors import StudioError
from imgrec.studio.jobfiles import append_event, read_job, write_job
from imgrec.studio.jobs import BUSY, JobManager


def make_project(home: Path, per_class: int = 3, name: str = "pets") -> Path:
    """home/<name>/data/{ants,bees}/*.jpg: real photos from the bundled sample."""
    project = home / name
    for label in ("ants", "bees"):
        copy_files(sample_files("train", label, per_class), project / "data" / label)
    return project


def wait_status(jobs: JobManager, project: Path, jid: str, statuses: set, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(project, jid)
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    log = (project / ".studio" / "jobs" / jid / "worker.log").read_text()
    raise AssertionError(f"job {jid} never reached {statuses}: {job}\n{log}")


def refused(call, status: int) -> str:
    with pytest.raises(StudioError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    message = caught.value.message
    assert message.endswith(".") and "\n" not in message, message
    return message


def stop(jobs: JobManager, project: Path, jid: str) -> None:
    """Leave no worker behind a test."""
    if jobs.get(project, jid)["status"] in ("queued", "running"):
        jobs.cancel(project, jid)


def test_bad_requests_are_refused_with_a_sentence_before_any_worker_starts(tmp_path):
    project = make_project(tmp_path)
    jobs = JobManager(tmp_path)
    assert "use one of train, audit" in refused(lambda: jobs.start(project, "dance", {}), 422)
    for options, fragment in [
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"epochs": -1}, "epochs"),
        ({"epochs": "3"}, "whole number"),
        ({"epochs": True}, "whole number"),
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"augment": "wild"}, "unknown augmentation preset 'wild'"),
        ({"time_limit": 0}, "positive number of seconds"),
        ({"time_limit": "soon"}, "cannot read the duration"),
        ({"image_size": 8}, "image_size"),
        ({"model": "no_such_net"}, "unknown model 'no_such_net'"),
    ]:
        assert fragment in refused(lambda o=options: jobs.start(project, "train", o), 422)
    assert "budget" in refused(lambda: jobs.start(project, "compare", {"budget": -5}), 422)
    assert "no trained model" in refused(
        lambda: jobs.start(project, "export", {"run": "train"}), 422
    )
    assert "format" in refused(
        lambda: jobs.start(project, "export", {"run": "train", "format": "tflite"}), 422
    )
    assert "it takes: none" in refused(lambda: jobs.start(project, "audit", {"x": 1}), 422)
    assert not (project / ".studio" / "jobs").exists()  # nothing was started
    assert not (project / "runs").exists()


def test_too_few_classes_or_photos_is_422_for_training_and_comparing(tmp_path):
    jobs = JobManager(tmp_path)
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    assert "has 0" in refused(lambda: jobs.start(empty, "train", {}), 422)
    single = tmp_path / "single"
    copy_files(sample_files("train", "ants", 3), single / "data" / "ants")
    assert "has 1:" in refused(lambda: jobs.start(single, "compare", {}), 422)
    copy_files(sample_files("train", "bees", 1), single / "data" / "bees")
    message = refused(lambda: jobs.start(single, "train", {}), 422)
    assert "class 'bees' has 1 photo;" in message


def test_a_job_that_fails_says_why_in_one_sentence(tmp_path):
    """Two class folders, but one holds only files that are not images: the worker's
    training finds one class, and the job fails with the library's own sentence."""
    project = tmp_path / "p"
    copy_files(sample_files("train", "ants", 3), project / "data" / "ants")
    (project / "data" / "bees").mkdir(parents=True)
    for i in range(2):
        (project / "data" / "bees" / f"b{i}.jpg").write_bytes(b"not a photo")
    jobs = JobManager(tmp_path)
    job = jobs.start(project, "train", {"model": "logreg-hog"})
    assert job["status"] == "running" and job["run"] == "train"
    done = wait_status(jobs, project, job["id"], {"done", "failed"})
    assert done["status"] == "failed"
    assert done["error"].startswith("Found only one class 'ants'"), done["error"]
    assert done["error"].endswith("a classifier needs at least two.")
    assert done["progress"]["message"] == done["error"]
    assert done["finished"] is not None
    assert done["events"][-1]["type"] == "status" and done["events"][-1]["status"] == "failed"
    assert not (project / "runs" / "train").exists(), "the reserved, unused run folder stays"


def test_one_job_per_project_and_cancel(tmp_path):
    project = make_project(tmp_path)
    other = make_project(tmp_path, name="other")
    jobs = JobManager(tmp_path)
    first = jobs.start(project, "train", {"model": "logreg-hog"})
    try:
        assert refused(lambda: jobs.start(project, "audit", {}), 409) == BUSY
        elsewhere = jobs.start(other, "audit", {})  # another project is not blocked
        jobs.cancel(other, elsewhere["id"])
    finally:
        cancelled = jobs.cancel(project, first["id"])
    assert cancelled["status"] == "cancelled" and cancelled["finished"]
    assert "not running (it is cancelled)" in refused(
        lambda: jobs.cancel(project, first["id"]), 409
    )
    assert [j["status"] for j in jobs.list(project)] == ["cancelled"]
    assert "only training jobs" in refused(lambda: jobs.resume(other, elsewhere["id"]), 409)
    assert refused(lambda: jobs.get(project, "nope"), 404)
    assert refused(lambda: jobs.get(project, "../other"), 404)
    second = jobs.start(project, "train", {"model": "logreg-hog"})  # free again
    assert second["run"] == "train-2" or second["run"] == "train"
    jobs.cancel(project, second["id"])
    assert [j["id"] for j in jobs.list(project)] == [second["id"], first["id"]]  # newest first


def test_a_killed_worker_leaves_the_job_interrupted_and_a_live_one_running(tmp_path):
    project = make_project(tmp_path)
    jobs = JobManager(tmp_path)
    job = jobs.start(project, "train", {"model": "logreg-hog"})
    _, cursor = jobs.poll(project, None)
    record = read_job(project / ".studio" / "jobs" / job["id"])
    os.killpg(record["pid"], signal.SIGKILL)  # kill -9, as a power cut would
    time.sleep(0.3)
    # a new server (the old one's child is still an unreaped zombie here) marks it at once
    assert JobManager(tmp_path).list(project)[0]["status"] == "interrupted"
    seen = read_job(project / ".studio" / "jobs" / job["id"])
    assert seen["status"] == "interrupted" and "resume it" in seen["error"]
    news, _ = jobs.poll(project, cursor)
    assert [(kind, data["status"]) for kind, data in news] == [("job", "interrupted")]

    live = jobs.start(project, "train", {"model": "logreg-hog"})
    try:  # a restarted server finds a worker that is still at work: it stays running
        assert JobManager(tmp_path).get(project, live["id"])["status"] == "running"
    finally:
        stop(jobs, project, live["id"])


def write_fake_job(project: Path, jid: str, status: str = "done") -> Path:
    folder = project / ".studio" / "jobs" / jid
    folder.mkdir(parents=True)
    write_job(
        folder,
        {
            "id": jid,
            "kind": "train",
            "status": status,
            "options": {},
            "created": "2026-01-01T00:00:00+00:00",
            "finished": None,
            "run": "train",
            "error": None,
        },
    )
    return folder


def epoch_event(epoch: int) -> dict:
    return {
        "type": "epoch",
        "phase": "finetune",
        "epoch": epoch,
        "train_loss": float("nan"),  # not measured: must become null, not NaN
        "val_loss": 0.5,
        "val_acc": 0.75,
        "seconds": 3.0 * epoch,
        "eta_s": 6.0,
    }


def test_poll_sends_the_state_first_then_only_what_is_new(tmp_path):
    project = tmp_path / "p"
    one = write_fake_job(project, "20260101-000000-000-aaaa")
    append_event(one, {"type": "phase", "phase": "Fine-tuning"})
    append_event(one, epoch_event(1))
    jobs = JobManager(tmp_path)

    news, cursor = jobs.poll(project, None)  # the current state, no history replayed
    assert [kind for kind, _ in news] == ["job"]
    assert news[0][1]["progress"]["epoch"] == 1 and news[0][1]["progress"]["loss"] is None
    assert "events" not in news[0][1]
    json.dumps(cursor)  # a plain JSON value
    assert jobs.poll(project, cursor)[0] == []

    append_event(one, epoch_event(2))
    with open(one / "events.jsonl", "a") as f:
        f.write('{"type": "message", "mess')  # a line still being written waits
    news, cursor = jobs.poll(project, cursor)
    assert [kind for kind, _ in news] == ["epoch", "job"]
    assert news[0][1] == {
        "phase": "finetune",
        "epoch": 2,
        "train_loss": None,
        "val_loss": 0.5,
        "val_acc": 0.75,
        "seconds": 6.0,
    }
    assert news[1][1]["progress"]["epoch"] == 2 and news[1][1]["progress"]["eta_s"] == 6.0
    assert jobs.poll(project, cursor)[0] == []
    with open(one / "events.jsonl", "a") as f:
        f.write('age": "half"}\n')
    news, cursor = jobs.poll(project, cursor)
    assert [(k, d["progress"]["message"]) for k, d in news] == [("job", "half")]

    two = write_fake_job(project, "20260101-000001-000-bbbb")  # a job new since the cursor
    append_event(two, epoch_event(1))
    job = read_job(one)
    write_job(one, {**job, "error": "changed"})  # job.json changed: that job is news too
    news, cursor = jobs.poll(project, cursor)
    assert sorted((k, d.get("id")) for k, d in news) == [
        ("epoch", None),
        ("job", "20260101-000000-000-aaaa"),
        ("job", "20260101-000001-000-bbbb"),
    ]
    assert jobs.poll(project, cursor)[0] == []


def test_a_running_job_without_a_worker_becomes_interrupted_when_polled(tmp_path):
    project = tmp_path / "p"
    folder = write_fake_job(project, "20260101-000000-000-aaaa", status="running")
    record = read_job(folder)
    write_job(folder, {**record, "pid": os.getpid(), "create_time": 12.0})  # a reused pid
    news, _ = JobManager(tmp_path / "elsewhere").poll(project, None)
    assert news[0][1]["status"] == "interrupted"
    assert (project / ".studio" / "jobs").exists()


def finetune_rows(history: Path) -> list[int]:
    with open(history, newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f) if r["phase"] == "finetune"]


@pytest.mark.slow
def test_cancel_then_resume_continues_the_same_run_to_the_end(tmp_path):
    project = make_project(tmp_path, per_class=10)
    jobs = JobManager(tmp_path)
    options = {"model": "efficientnet_lite0", "epochs": 3, "image_size": 96}
    job = jobs.start(project, "train", options)
    cursor, rows, deadline = None, [], time.monotonic() + 120
    try:
        while not any(r["phase"] == "finetune" for r in rows) and time.monotonic() < deadline:
            news, cursor = jobs.poll(project, cursor)
            rows += [data for kind, data in news if kind == "epoch"]
            time.sleep(0.2)
    finally:
        cancelled = jobs.cancel(project, job["id"])
    assert [r["phase"] for r in rows][:1] == ["head"], rows  # the head's rows came first
    assert cancelled["status"] == "cancelled"
    run = project / "runs" / job["run"]
    assert (run / "config.json").is_file() and (run / "checkpoints" / "best.json").is_file()
    assert json.loads((run / "job.json").read_text())["status"] == "cancelled"
    kept = finetune_rows(run / "checkpoints" / "history.csv")

    resumed = jobs.resume(project, job["id"])
    assert resumed["status"] == "running" and resumed["id"] == job["id"]
    done = wait_status(jobs, project, job["id"], {"done", "failed", "interrupted"})
    assert done["status"] == "done", done
    assert done["run"] == job["run"] and done["error"] is None
    final = done["events"][-1]
    assert final["status"] == "done" and 0.0 <= final["accuracy"] <= 1.0
    phases = [e["phase"] for e in done["events"] if e["type"] == "phase"]
    assert "Fine-tuning" in phases and phases[-1] == "Writing the report", phases
    epochs = finetune_rows(run / "history.csv")
    assert epochs == list(range(1, len(epochs) + 1)), "an epoch was repeated or lost"
    assert epochs[: len(kept)] == kept and len(epochs) <= 3
    for name in ("model.imgrec", "predictions.csv", "metrics.json", "report.html"):
        assert (run / name).is_file(), name
    assert json.loads((run / "job.json").read_text())["status"] == "done"
