"""The studio's FastAPI app: the page, its static files and the HTTP API of docs/studio.md.

The routes are thin: projects.py keeps the files, jobs.py runs training, audits, comparisons
and exports in worker processes, results.py reads run folders, live.py answers Try-it
frames. The app holds only those objects, so two browser tabs share one lock per project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from imgrec.errors import ImgrecError
from imgrec.serve.middleware import BodySizeLimit, ErrorShield
from imgrec.studio import job_routes, project_routes
from imgrec.studio.errors import StudioError
from imgrec.studio.jobs import JobManager
from imgrec.studio.live import LiveModels
from imgrec.studio.projects import Studio
from imgrec.studio.security import StudioGuard, is_loopback
from imgrec.version import __version__

# The page's own files may load only from the studio itself: no CDN, no inline script.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class StudioSettings:
    """What `imgrec studio` can be told; the defaults suit one person on a laptop."""

    home: Path = field(default_factory=lambda: Path.home() / "imgrec-studio")
    host: str = "127.0.0.1"
    token: str | None = None  # required (and generated when not given) off loopback
    max_upload_mb: float = 100.0  # one request's body; larger -> 413


def static_folder() -> Path:
    return Path(str(resources.files("imgrec.studio") / "static"))


def create_app(settings: StudioSettings) -> FastAPI:
    """The app over `settings.home`; workers left running by an earlier server are found."""
    if not is_loopback(settings.host) and not settings.token:
        raise ImgrecError(
            f"the studio on {settings.host} would be open to other machines: give it a --token "
            "(or let `imgrec studio` generate one)."
        )
    app = FastAPI(
        title="imgrec studio",
        version=__version__,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.studio = Studio(settings.home)
    app.state.jobs = JobManager(settings.home)
    app.state.live = LiveModels()
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_upload_mb * 1024 * 1024))
    app.add_middleware(ErrorShield)
    app.add_middleware(StudioGuard, token=settings.token, loopback_only=is_loopback(settings.host))
    _add_error_handlers(app)
    app.include_router(project_routes.router)
    app.include_router(job_routes.router)
    _add_page(app, settings)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def studio_error(_: Request, exc: StudioError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(ImgrecError)
    async def imgrec_error(_: Request, exc: ImgrecError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        message = {
            404: "there is nothing at this address.",
            405: "this address does not take that method.",
        }.get(exc.status_code, str(exc.detail))
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request")
        return JSONResponse(
            {"error": f"the request is not valid: {where or 'body'}: {message}."},
            status_code=422,
        )


def _add_page(app: FastAPI, settings: StudioSettings) -> None:
    folder = static_folder()

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(folder / "index.html", headers=PAGE_HEADERS)

    @app.get("/api/info")
    def info() -> dict:
        return {
            "version": __version__,
            "home": str(settings.home),
            "max_upload_mb": settings.max_upload_mb,
            "token_required": bool(settings.token),
        }

    app.mount("/static", StaticFiles(directory=folder), name="static")
