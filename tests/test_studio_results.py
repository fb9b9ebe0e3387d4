"""What the studio's Results, Check-data and Compare tabs read: run folders written by the
library (metrics.json, predictions.csv), a real audit, a leaderboard, and a real training job
that must match `imgrec train` on the same folder."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from runhelpers import copy_files, run_imgrec, sample_files

from imgrec.evaluate import EvaluationResult
from imgrec.evaluate.intervals import wilson_interval
from imgrec.evaluate.report import calibration_reading
from imgrec.runs.finish import write_predictions
from imgrec.studio import results
from imgrec.studio.errors import StudioError
from imgrec.studio.jobs import JobManager

CLASSES = ["cat", "dog", "fox #1"]  # a name that needs quoting in a URL


def refused(call, status: int) -> str:
    with pytest.raises(StudioError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    return caught.value.message


def fake_run(project: Path, rid: str = "train", n: int = 30, seed: int = 0) -> EvaluationResult:
    """A run folder as finish_run leaves it (metrics.json, predictions.csv, config.json) from
    made-up predictions on files that exist in project/data."""
    rng = np.random.default_rng(seed)
    targets = np.arange(n) % len(CLASSES)
    probs = rng.dirichlet(np.ones(len(CLASSES)), size=n)
    probs[targets < 1, 0] += 1.0  # cats mostly right, the rest a mix
    probs /= probs.sum(axis=1, keepdims=True)
    paths = []
    for i, t in enumerate(targets):
        path = project / "data" / CLASSES[t] / f"img {i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        paths.append(str(path))
    result = EvaluationResult.from_predictions(probs, targets, CLASSES, paths)
    result.metrics["phases"] = {"evaluation": {"seconds": 1.0, "split": "test"}}
    run = project / "runs" / rid
    run.mkdir(parents=True)
    result.save_metrics(run / "metrics.json")
    write_predictions(run / "predictions.csv", result)
    (run / "config.json").write_text(json.dumps({"model": "logreg-hog"}))
    (run / "report.html").write_text("<html></html>")
    return result


def test_run_results_are_the_reports_figures(tmp_path):
    project = tmp_path / "pets"
    result = fake_run(project)
    m = result.metrics
    got = results.run_results(project, "train")
    correct = int(np.trace(np.array(m["confusion_matrix"])))
    assert got["accuracy"] == m["accuracy"] and got["n"] == 30
    assert got["interval"] == list(wilson_interval(correct, 30))
    assert got["interval"][0] < got["accuracy"] < got["interval"][1]
    assert got["calibration"] == calibration_reading(m["calibration"]) != ""
    assert got["confusion"] == {"classes": CLASSES, "matrix": m["confusion_matrix"]}
    assert [row["class"] for row in got["per_class"]] == CLASSES
    assert got["per_class"][0]["recall"] == m["per_class"]["cat"]["recall"]
    assert got["evaluated_on"] == "test" and got["model"] == "logreg-hog"
    assert got["phases"][0]["phase"] == "Evaluation"
    assert got["files"] == {
        "report.html": "/api/projects/pets/runs/train/files/report.html",
        "predictions.csv": "/api/projects/pets/runs/train/files/predictions.csv",
    }
    assert results.list_runs(project) == [
        {
            "id": "train",
            "created": got["created"],
            "model": "logreg-hog",
            "accuracy": m["accuracy"],
            "status": "done",
            "kind": "train",
        }
    ]
    assert "no run 'nope'" in refused(lambda: results.run_results(project, "nope"), 404)
    assert refused(lambda: results.run_results(project, "../pets"), 404)


def test_wrong_and_confusion_images_come_from_predictions_csv(tmp_path):
    project = tmp_path / "pets"
    result = fake_run(project)
    cm = np.array(result.metrics["confusion_matrix"])
    wrong = results.wrong_images(project, "train", limit=1000)
    assert len(wrong) == cm.sum() - np.trace(cm)
    confidences = [w["confidence"] for w in wrong]
    assert confidences == sorted(confidences, reverse=True)  # most confidently wrong first
    assert all(w["actual"] != w["predicted"] for w in wrong)
    assert len(results.wrong_images(project, "train", limit=2)) == 2
    first = wrong[0]
    assert first["url"] == f"/api/projects/pets/images/{first['cls']}/{first['name']}".replace(
        " ", "%20"
    ).replace("#", "%23")
    assert first["thumb"].startswith("/api/projects/pets/thumbs/") and not first["missing"]
    (project / "data" / first["cls"] / first["name"]).unlink()  # deleted since the run
    assert results.wrong_images(project, "train")[0]["missing"] is True

    for a, actual in enumerate(CLASSES):
        for p, predicted in enumerate(CLASSES):
            cell = results.confusion_images(project, "train", actual, predicted)
            assert len(cell) == cm[a, p], (actual, predicted)
            assert all(i["cls"] == actual for i in cell)
    assert refused(lambda: results.confusion_images(project, "train", "cat", "cow"), 404)
    assert refused(lambda: results.wrong_images(project, "train", limit=0), 422)


def test_a_run_without_results_shows_its_status_and_no_numbers(tmp_path):
    project = tmp_path / "pets"
    run = project / "runs" / "train-2"
    (run / "checkpoints").mkdir(parents=True)
    job = project / ".studio" / "jobs" / "20260101-000000-000-aaaa"
    job.mkdir(parents=True)
    record = {"id": job.name, "kind": "train", "status": "running", "run": "train-2"}
    record["created"] = "2026-01-01T00:00:00+00:00"
    (job / "job.json").write_text(json.dumps(record))
    got = results.run_results(project, "train-2")
    assert got["status"] == "running" and got["accuracy"] is None and "interval" not in got
    assert results.list_runs(project)[0]["status"] == "running"
    assert "no predictions.csv" in refused(lambda: results.wrong_images(project, "train-2"), 404)
    (job / "job.json").unlink()
    assert results.run_results(project, "train-2")["status"] == "incomplete"


def test_leaderboard_is_the_latest_comparisons(tmp_path):
    project = tmp_path / "pets"
    assert results.leaderboard(project) is None
    for name, acc in (("compare", 0.8), ("compare-2", 0.9)):
        folder = project / "runs" / name
        folder.mkdir(parents=True)
        entries = [
            {"rank": 1, "family": "logreg-embed", "status": "ok", "accuracy": acc},
            {"rank": "", "family": "cnn-scratch", "status": "skipped", "accuracy": None},
        ]
        (folder / "leaderboard.json").write_text(json.dumps({"entries": entries}))
        time.sleep(0.02)
    board = results.leaderboard(project)
    assert board["run"] == "compare-2" and board["entries"][0]["accuracy"] == 0.9
    listed = {r["id"]: r for r in results.list_runs(project)}
    assert listed["compare"]["kind"] == "compare" and listed["compare"]["accuracy"] == 0.8
    assert listed["compare-2"]["model"] == "logreg-embed"


def wait_done(jobs: JobManager, project: Path, jid: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(project, jid)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {jid} still {job['status']}")


def test_audit_cards_over_a_real_audit_with_a_duplicate_pair(tmp_path):
    project = tmp_path / "pets"
    ants = copy_files(sample_files("train", "ants", 3), project / "data" / "ants")
    copy_files(sample_files("train", "bees", 3), project / "data" / "bees")
    shutil.copy(ants[0], project / "data" / "bees" / "copy.jpg")  # the same photo, twice
    assert results.audit_cards(project, {}) is None  # never checked
    jobs = JobManager(tmp_path)
    job = wait_done(jobs, project, jobs.start(project, "audit", {})["id"])
    assert job["status"] == "done", job
    assert job["run"] is None and job["progress"]["message"].startswith("error: results")

    audit = results.audit_cards(project, {})
    assert audit["verdict"] == job["progress"]["message"] and audit["summary"]
    cards = {card["check"]: card for card in audit["cards"]}
    assert {"exact_duplicate", "label_conflict"} <= set(cards)
    severities = [card["severity"] for card in audit["cards"]]
    assert severities == sorted(severities, key=results.SEVERITY_ORDER.get)  # errors first
    pair = cards["exact_duplicate"]["images"]
    assert {(i["cls"], i["name"]) for i in pair} == {("ants", ants[0].name), ("bees", "copy.jpg")}
    for image in pair:
        assert image["detail"].startswith("copy of") and not image["missing"]
        assert [(p["cls"], p["name"]) for p in image["partners"]] == [
            (other["cls"], other["name"]) for other in pair if other is not image
        ]
    kept = {"exact_duplicate": {("bees", "copy.jpg")}}
    after = {c["check"]: c for c in results.audit_cards(project, kept)["cards"]}
    assert [i["name"] for i in after["exact_duplicate"]["images"]] == [ants[0].name]
    assert len(after["label_conflict"]["images"]) == 2  # kept for one check only
    both = {"exact_duplicate": {("bees", "copy.jpg"), ("ants", ants[0].name)}}
    left = results.audit_cards(project, both)["cards"]
    assert "exact_duplicate" not in {c["check"] for c in left}


@pytest.mark.slow
def test_a_default_training_job_matches_imgrec_train_and_its_results_read_back(tmp_path):
    project = tmp_path / "pets"
    for label in ("ants", "bees"):
        copy_files(sample_files("train", label, 10), project / "data" / label)
    jobs = JobManager(tmp_path)
    job = wait_done(jobs, project, jobs.start(project, "train", {})["id"])
    assert job["status"] == "done", job
    run = project / "runs" / job["run"]
    cli = run_imgrec("train", project / "data", "--out", tmp_path / "cli", "-q")
    assert cli.returncode == 0, cli.stderr
    ours, theirs = (json.loads((f / "metrics.json").read_text()) for f in (run, tmp_path / "cli"))
    assert ours["accuracy"] == theirs["accuracy"] and ours["n"] == theirs["n"]
    assert ours["confusion_matrix"] == theirs["confusion_matrix"]
    rows = [
        list(csv.reader((f / "predictions.csv").read_text().splitlines()))
        for f in (run, tmp_path / "cli")
    ]
    assert [r[:3] for r in rows[0]] == [r[:3] for r in rows[1]]
    assert rows[0][0] == ["path", "actual", "predicted", "confidence", "prob_ants", "prob_bees"]

    got = results.run_results(project, job["run"])
    assert got["accuracy"] == ours["accuracy"] and got["status"] == "done"
    assert set(got["files"]) >= {"report.html", "model_card.html", "model.imgrec"}
    cm = np.array(ours["confusion_matrix"])
    assert len(results.wrong_images(project, job["run"])) == cm.sum() - np.trace(cm)
    cell = results.confusion_images(project, job["run"], "ants", "ants")
    assert len(cell) == cm[0, 0] and all(i["actual"] == i["predicted"] == "ants" for i in cell)
    listed = results.list_runs(project)
    assert [(r["id"], r["status"], r["model"]) for r in listed] == [
        (job["run"], "done", "efficientnet_lite0")
    ]
