"""Reading the images of one predict request, with every bad input mapped to a 4xx error.

Two ways in: multipart/form-data with files under `files` (browsers, curl -F), or the raw
bytes of one image with an image/* content type (curl --data-binary, mobile apps).
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request


class ApiError(Exception):
    """A client error that becomes `{"error": message, "filename": ...}` with `status`."""

    def __init__(self, status: int, message: str, filename: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.filename = filename


async def read_uploads(request: Request, max_files: int) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every uploaded image, in request order."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "multipart/form-data":
            return await _read_multipart(request, max_files)
        if kind.startswith("image/"):
            name = request.headers.get("x-filename") or "upload"
            return [(name, await request.body())]
    except ClientDisconnect:
        raise ApiError(400, "the client went away before the upload was complete") from None
    raise ApiError(
        415,
        f"unsupported content type '{kind or 'none'}': send multipart/form-data with files "
        "under 'files', or one image with an image/* content type",
    )


async def _read_multipart(request: Request, max_files: int) -> list[tuple[str, bytes]]:
    async with request.form(max_files=max_files, max_fields=16) as form:
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not files:
            raise ApiError(422, "no images: put them in the form field 'files'")
        return [(f.filename or f"file{i + 1}", await f.read()) for i, f in enumerate(files)]


async def form_number(request: Request, name: str) -> float | None:
    """A number sent as form field `name` next to the files (None if absent or no form).

    Only reads a multipart body, which `read_uploads` has already parsed and Starlette
    keeps, so this costs nothing and never consumes a raw image body.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        return None
    values = (await request.form()).getlist(name)
    if len(values) > 1:
        raise ApiError(422, f"form field {name} was sent {len(values)} times; send it once")
    value = values[0] if values else None
    if value is None or not isinstance(value, str) or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise ApiError(422, f"form field {name} must be a number, got '{value[:40]}'") from None
