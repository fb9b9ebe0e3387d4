"""Routes for jobs and their live events, results, Try-it, the audit and the project zip.

Long work (training, audits, comparisons, ONNX export) never runs in the server: jobs.py
starts a worker process and these routes only read what it writes, so the page stays quick
while both cores train.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from imgrec.studio import results
from imgrec.studio.errors import StudioError
from imgrec.studio.names import check_name
from imgrec.studio.project_routes import project_of, studio_of, uploaded_files, uploaded_zip

router = APIRouter(prefix="/api")

POLL_SECONDS = 0.5  # how often the event stream looks for news
HEARTBEAT_SECONDS = 15.0  # a comment line keeps proxies and the browser from timing out
# What a run's files address hands out: the files the Results tab links, and the run's records.
SERVED_FILES = frozenset(
    {
        *results.RUN_FILES,
        *results.COMPARE_FILES,
        "model_card.md",
        "metrics.json",
        "history.csv",
        "split.csv",
        "config.json",
    }
)
DOWNLOADS = {".imgrec", ".onnx", ".csv", ".md", ".json"}


class JobRequest(BaseModel):
    kind: str = Field(max_length=40)
    options: dict = Field(default_factory=dict)


def jobs_of(request: Request):
    return request.app.state.jobs


# -- jobs and their events ------------------------------------------------------------------


@router.post("/projects/{pid}/jobs", status_code=202)
def start_job(request: Request, pid: str, body: JobRequest) -> dict:
    return jobs_of(request).start(project_of(request, pid).folder, body.kind, body.options)


@router.get("/projects/{pid}/jobs")
def list_jobs(request: Request, pid: str) -> dict:
    return {"jobs": jobs_of(request).list(project_of(request, pid).folder)}


@router.get("/projects/{pid}/jobs/{jid}")
def get_job(request: Request, pid: str, jid: str) -> dict:
    return jobs_of(request).get(project_of(request, pid).folder, jid)


@router.post("/projects/{pid}/jobs/{jid}/cancel")
def cancel_job(request: Request, pid: str, jid: str) -> dict:
    return jobs_of(request).cancel(project_of(request, pid).folder, jid)


@router.post("/projects/{pid}/jobs/{jid}/resume")
def resume_job(request: Request, pid: str, jid: str) -> dict:
    return jobs_of(request).resume(project_of(request, pid).folder, jid)


@router.get("/projects/{pid}/events")
async def events(request: Request, pid: str) -> StreamingResponse:
    project = project_of(request, pid)
    return StreamingResponse(
        _event_stream(request, project),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _event_stream(request: Request, project) -> AsyncIterator[str]:
    """Server-sent events: every job's state at once, then only news, until the page leaves."""
    jobs = jobs_of(request)
    cursor, version, quiet = None, None, 0.0
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        news, cursor = await run_in_threadpool(jobs.poll, project.folder, cursor)
        if project.version != version:
            version = project.version
            news.append(("project", {"version": version}))
        for name, data in news:
            yield f"event: {name}\ndata: {json.dumps(data, allow_nan=False, default=str)}\n\n"
        quiet = 0.0 if news else quiet + POLL_SECONDS
        if quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": still here\n\n"
        await asyncio.sleep(POLL_SECONDS)


# -- results --------------------------------------------------------------------------------


@router.get("/projects/{pid}/runs")
def list_runs(request: Request, pid: str) -> dict:
    return {"runs": results.list_runs(project_of(request, pid).folder)}


@router.get("/projects/{pid}/runs/{rid}")
def run_results(request: Request, pid: str, rid: str) -> dict:
    return results.run_results(project_of(request, pid).folder, _run_id(rid))


@router.get("/projects/{pid}/runs/{rid}/confusion")
def confusion(request: Request, pid: str, rid: str, actual: str, predicted: str) -> dict:
    folder = project_of(request, pid).folder
    return {"images": results.confusion_images(folder, _run_id(rid), actual, predicted)}


@router.get("/projects/{pid}/runs/{rid}/wrong")
def wrong(request: Request, pid: str, rid: str, limit: int = 24) -> dict:
    folder = project_of(request, pid).folder
    return {"images": results.wrong_images(folder, _run_id(rid), max(1, min(limit, 200)))}


@router.get("/projects/{pid}/runs/{rid}/files/{name}")
def run_file(request: Request, pid: str, rid: str, name: str) -> FileResponse:
    if name not in SERVED_FILES:
        raise StudioError(f"'{name[:80]}' is not a file the studio hands out from a run.", 404)
    path = project_of(request, pid).runs / _run_id(rid) / name
    if not path.is_file():
        raise StudioError(f"this run has no {name}.", 404)
    if path.suffix in DOWNLOADS:
        return FileResponse(path, filename=f"{rid}-{name}")
    return FileResponse(path)


@router.get("/projects/{pid}/runs/{rid}/plots/{name}")
def run_plot(request: Request, pid: str, rid: str, name: str) -> FileResponse:
    """The report's plots (report.html links them as plots/NAME.png)."""
    check_name(name, "plot")
    path = project_of(request, pid).runs / _run_id(rid) / "plots" / name
    if path.suffix != ".png" or not path.is_file():
        raise StudioError(f"this run has no plot {name[:80]}.", 404)
    return FileResponse(path)


@router.post("/projects/{pid}/runs/{rid}/predict")
async def predict(request: Request, pid: str, rid: str, top_k: int = 5) -> dict:
    model_file = project_of(request, pid).runs / _run_id(rid) / "model.imgrec"
    files = await uploaded_files(request)
    if len(files) != 1:
        raise StudioError("send one image at a time to try the model.", 422)
    live = request.app.state.live
    return await run_in_threadpool(live.predict, model_file, files[0][1], max(1, min(top_k, 20)))


def _run_id(rid: str) -> str:
    """A run folder's name, refused when it could leave runs/."""
    check_name(rid, "run")
    return rid


# -- the audit, the augmentation preview ------------------------------------------------------


@router.get("/projects/{pid}/audit")
def audit(request: Request, pid: str) -> dict:
    project = project_of(request, pid)
    found = results.audit_cards(project.folder, project.kept())
    return found if found is not None else {"verdict": None, "cards": []}


@router.get("/projects/{pid}/augment-preview")
def augment_preview(
    request: Request, pid: str, augment: str = "default", image_size: int = 224
) -> FileResponse:
    from imgrec.classifier import ImageClassifier
    from imgrec.config import AUGMENT_PRESETS
    from imgrec.data.dataset import load_dataset
    from imgrec.train.augment_preview import preview_augmentations

    if augment not in AUGMENT_PRESETS:
        choices = ", ".join(AUGMENT_PRESETS)
        raise StudioError(f"unknown augmentation '{augment[:40]}'; use one of {choices}.", 422)
    if not 32 <= image_size <= 1024:
        raise StudioError("image_size must be between 32 and 1024 pixels.", 422)
    project = project_of(request, pid)
    out = project.folder / ".studio" / "previews" / f"{project.version}-{augment}-{image_size}.png"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in out.parent.glob("*.png"):  # grids of earlier versions of the photos
            if not stale.name.startswith(f"{project.version}-"):
                stale.unlink(missing_ok=True)
        spec = ImageClassifier(image_size=image_size).preprocessing  # the default backbone's
        preview_augmentations(load_dataset(project.data), augment, out, images=4, spec=spec)
    return FileResponse(out, media_type="image/png", headers={"Cache-Control": "no-store"})


# -- the project as a zip -------------------------------------------------------------------


@router.get("/projects/{pid}/export.zip")
def export_zip(request: Request, pid: str) -> FileResponse:
    project = project_of(request, pid)
    handle, name = tempfile.mkstemp(prefix="imgrec-studio-export-", suffix=".zip")
    try:
        with os.fdopen(handle, "wb") as out:
            project.export_zip(out)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return FileResponse(
        name,
        media_type="application/zip",
        filename=f"{project.id}.zip",
        background=BackgroundTask(Path(name).unlink, missing_ok=True),
    )


@router.post("/projects/import", status_code=201)
async def import_project(request: Request) -> dict:
    studio = studio_of(request)
    async with uploaded_zip(request) as path:
        project = await run_in_threadpool(studio.import_project_zip, path)
    return project.describe()
