"""Routes for projects, classes, images, imports and undo (docs/studio.md, first two tables).

Each route is one call into projects.py. File work is blocking, so the routes are plain
functions (FastAPI runs them in its thread pool) or hand their work to a thread.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from imgrec.serve.uploads import FILE_BATCH_TYPE, WENT_AWAY, ApiError, read_uploads
from imgrec.studio.errors import StudioError
from imgrec.studio.names import sanitise_file_name
from imgrec.studio.projects import Project, Studio

router = APIRouter(prefix="/api")

MAX_FILES_PER_REQUEST = 256
UPLOAD_ERRORS = {  # read_uploads' refusals, as the page says them
    WENT_AWAY: "the upload stopped before it was complete; nothing was added.",
    415: "send images as multipart/form-data under the field 'files', one image with an "
    f"image/* content type, or a {FILE_BATCH_TYPE} batch (docs/studio.md).",
    422: "no images came with the request: put them under 'files'.",
}
IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


class Named(BaseModel):
    name: str = Field(max_length=400)


class Into(BaseModel):
    into: str = Field(max_length=400)


class ImageRef(BaseModel):
    cls: str = Field(max_length=400)
    name: str = Field(max_length=400)


class ImageRefs(BaseModel):
    images: list[ImageRef] = Field(max_length=100_000)


class MoveRefs(ImageRefs):
    to: str = Field(max_length=400)


class KeepRefs(ImageRefs):
    check: str = Field(max_length=100)


class LocalPath(BaseModel):
    path: str = Field(max_length=4096)


def studio_of(request: Request) -> Studio:
    return request.app.state.studio


def project_of(request: Request, pid: str) -> Project:
    return studio_of(request).project(pid)


def refs(body: ImageRefs) -> list[tuple[str, str]]:
    return [(r.cls, r.name) for r in body.images]


# -- projects and the trash -------------------------------------------------------------


@router.get("/projects")
def list_projects(request: Request) -> dict:
    return {"projects": studio_of(request).list_projects()}


@router.post("/projects", status_code=201)
def create_project(request: Request, body: Named) -> dict:
    return studio_of(request).create_project(body.name).describe()


@router.get("/projects/{pid}")
def get_project(request: Request, pid: str) -> dict:
    return project_of(request, pid).describe()


@router.patch("/projects/{pid}")
def rename_project(request: Request, pid: str, body: Named) -> dict:
    project = project_of(request, pid)
    project.rename(body.name)
    return project.describe()


@router.delete("/projects/{pid}")
def delete_project(request: Request, pid: str) -> dict:
    jobs = request.app.state.jobs.list(project_of(request, pid).folder)
    if any(job["status"] in ("queued", "running") for job in jobs):
        raise StudioError(
            "a job is running in this project: cancel it before deleting the project.", 409
        )
    return {"trash_id": studio_of(request).trash_project(pid)}


@router.get("/trash")
def list_trash(request: Request) -> dict:
    return {"items": studio_of(request).list_trash()}


@router.post("/trash/{trash_id}/restore")
def restore(request: Request, trash_id: str) -> dict:
    return studio_of(request).restore(trash_id).describe()


# -- classes ------------------------------------------------------------------------------


@router.post("/projects/{pid}/classes", status_code=201)
def add_class(request: Request, pid: str, body: Named) -> dict:
    return project_of(request, pid).add_class(body.name)


@router.patch("/projects/{pid}/classes/{cls}")
def rename_class(request: Request, pid: str, cls: str, body: Named) -> dict:
    return project_of(request, pid).rename_class(cls, body.name)


@router.post("/projects/{pid}/classes/{cls}/merge")
def merge_class(request: Request, pid: str, cls: str, body: Into) -> dict:
    return project_of(request, pid).merge_class(cls, body.into)


@router.delete("/projects/{pid}/classes/{cls}")
def delete_class(request: Request, pid: str, cls: str) -> dict:
    return project_of(request, pid).delete_class(cls)


# -- images -------------------------------------------------------------------------------


@router.get("/projects/{pid}/classes/{cls}/images")
def list_images(request: Request, pid: str, cls: str, offset: int = 0, limit: int = 100) -> dict:
    if offset < 0 or limit < 1:
        raise StudioError("offset must be 0 or more and limit 1 or more.", 422)
    return project_of(request, pid).list_images(cls, offset, limit)


@router.post("/projects/{pid}/classes/{cls}/images")
async def add_images(request: Request, pid: str, cls: str) -> JSONResponse:
    # a plain JSON answer: FastAPI's encoding of a returned dict (jsonable_encoder) cost
    # 0.007 ms per Image, about 6% of the time to upload a photo
    project = project_of(request, pid)
    files = await uploaded_files(request)
    return JSONResponse(await run_in_threadpool(project.add_images, cls, files))


@router.get("/projects/{pid}/images/{cls}/{name}")
def image(request: Request, pid: str, cls: str, name: str) -> FileResponse:
    return FileResponse(project_of(request, pid).image_path(cls, name), headers=IMAGE_HEADERS)


@router.get("/projects/{pid}/thumbs/{cls}/{name}")
def thumbnail(request: Request, pid: str, cls: str, name: str) -> FileResponse:
    path = project_of(request, pid).thumbnail(cls, name)
    return FileResponse(path, media_type="image/jpeg", headers=IMAGE_HEADERS)


@router.post("/projects/{pid}/images/move")
def move_images(request: Request, pid: str, body: MoveRefs) -> dict:
    return project_of(request, pid).move_images(refs(body), body.to)


@router.post("/projects/{pid}/images/delete")
def delete_images(request: Request, pid: str, body: ImageRefs) -> dict:
    return project_of(request, pid).delete_images(refs(body))


@router.post("/projects/{pid}/audit/keep")
def keep(request: Request, pid: str, body: KeepRefs) -> dict:
    return project_of(request, pid).keep(refs(body), body.check)


# -- imports and undo -----------------------------------------------------------------------


@router.post("/projects/{pid}/import/zip")
async def import_zip(request: Request, pid: str, cls: str | None = None) -> dict:
    project = project_of(request, pid)
    async with uploaded_zip(request) as path:
        return await run_in_threadpool(project.import_zip, path, cls)


@router.post("/projects/{pid}/import/folder")
def import_folder(request: Request, pid: str, body: LocalPath) -> dict:
    return project_of(request, pid).import_folder(Path(body.path).expanduser())


@router.post("/projects/{pid}/import/csv")
def import_csv(request: Request, pid: str, body: LocalPath) -> dict:
    return project_of(request, pid).import_csv(Path(body.path).expanduser())


@router.get("/projects/{pid}/actions")
def actions(request: Request, pid: str, limit: int = 50) -> dict:
    return {"actions": project_of(request, pid).actions(max(1, min(limit, 500)))}


@router.post("/projects/{pid}/actions/{aid}/undo")
def undo(request: Request, pid: str, aid: str) -> dict:
    return project_of(request, pid).undo(aid)


# -- reading uploads ------------------------------------------------------------------------


async def uploaded_files(request: Request) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every file in a multipart `files` field, or of a raw image body:
    the REST server's reading (serve/uploads.py), its refusals in the studio's words."""
    try:
        return await read_uploads(request, MAX_FILES_PER_REQUEST)
    except ApiError as exc:
        words = UPLOAD_ERRORS.get(exc.message) or UPLOAD_ERRORS.get(exc.status, exc.message)
        raise StudioError(words if words.endswith(".") else words + ".", exc.status) from None


class uploaded_zip:  # noqa: N801 - used as `async with uploaded_zip(request) as path`
    """The multipart field `file` spooled to a temporary folder (under the name it was sent
    with, so messages name the user's file), removed afterwards."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.folder: str | None = None

    async def __aenter__(self) -> Path:
        kind = self.request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data":
            raise StudioError("send the zip as multipart/form-data under the field 'file'.", 415)
        self.folder = tempfile.mkdtemp(prefix="imgrec-studio-zip-")
        try:
            return await self._spool(Path(self.folder))
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    async def _spool(self, folder: Path) -> Path:
        try:
            async with self.request.form(max_files=1, max_fields=8) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise StudioError("no zip came with the request: put it under 'file'.", 422)
                path = folder / sanitise_file_name(upload.filename or "", "upload.zip")
                with path.open("wb") as out:
                    while chunk := await upload.read(1 << 20):
                        out.write(chunk)
                return path
        except ClientDisconnect:
            message = "the upload stopped before it was complete; nothing changed."
            raise StudioError(message) from None

    async def __aexit__(self, *_) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
