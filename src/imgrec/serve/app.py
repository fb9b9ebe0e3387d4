"""The FastAPI app: routes, error shapes and wiring; the work lives in the sibling modules."""

from __future__ import annotations

import asyncio
import hmac
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgrec.data.decode import UnreadableImage
from imgrec.errors import ImgrecError
from imgrec.infer.predict import answer_label
from imgrec.prediction_log.writer import PredictionLog
from imgrec.runtime import release_free_memory
from imgrec.serve.batching import MicroBatcher
from imgrec.serve.docs_page import DOCS_HEADERS, render_docs
from imgrec.serve.metrics import Metrics
from imgrec.serve.middleware import BodySizeLimit, ErrorShield, RequestMetrics
from imgrec.serve.pixels import PixelBudget, over_budget_message, request_pixels
from imgrec.serve.predictor import Predictor
from imgrec.serve.settings import ServeSettings
from imgrec.serve.uploads import ApiError, form_number, read_uploads
from imgrec.version import __version__

# The page may only talk to this server and show images the user picked (blob: URLs).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
}
PREDICT_BODY = {  # for /docs: the endpoint reads the request itself to accept both forms
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "min_confidence": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                },
                "required": ["files"],
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


class PredictionOut(BaseModel):
    filename: str
    label: str  # the top class, or "unknown" when its probability is below min_confidence
    labels: list[str]
    probabilities: list[float]


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]
    min_confidence: float
    latency_ms: float


class ErrorOut(BaseModel):
    error: str
    filename: str | None = None


# After decoding this many pixels in one request, freed memory goes back to the OS at once
# (runtime.configure_cpu_runtime keeps freed heap for speed); photos drafted from JPEG stay
# far below it, big PNGs and TIFFs do not.
TRIM_AFTER_PIXELS = 4_000_000

# Every answer that is not a 200, declared for the schema (and so checked by the API fuzzing):
# the shield's 500 and 503 and the connection limit's 503 can come from any endpoint.
_ERROR_TEXT = {
    400: "The request is malformed (a broken multipart body) or the client went away.",
    401: "The X-API-Key header is missing or wrong (only when the server has a key).",
    413: "The body is over the upload limit, or its images hold too many pixels.",
    415: "The content type is neither multipart/form-data nor image/*.",
    422: "A file is not a usable image, or a parameter is out of range.",
    500: "An unexpected error on the server; its log says more.",
    503: "The server ran out of memory for this request, or is at its connection limit.",
}


def _errors(*statuses: int) -> dict:
    return {s: {"model": ErrorOut, "description": _ERROR_TEXT[s]} for s in statuses}


PREDICT_PARAMETERS = frozenset({"top_k", "min_confidence"})
ERRORS = _errors(400, 401, 413, 415, 422, 500, 503)  # of /v1/predict
ALWAYS = _errors(500, 503)


@dataclass
class _Service:
    """What the routes share: the settings and the parts `create_app` opened."""

    settings: ServeSettings
    predictor: Predictor
    metrics: Metrics
    batcher: MicroBatcher
    log: PredictionLog | None
    pixels: PixelBudget


def create_app(model_path: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """An app serving `model_path`; the model (and the prediction log, when `settings.log` is
    set) open now, so a bad file fails before binding."""
    settings = settings or ServeSettings()
    _check_log_options(settings)
    service = _open_service(model_path, settings)
    app = FastAPI(
        title="imgrec",
        version=__version__,
        summary=f"Image classifier: {', '.join(service.predictor.classes)}",
        lifespan=_lifespan(service),
        openapi_url=None,  # served by _add_docs_routes, behind the API key when there is one
        docs_url=None,
        redoc_url=None,  # ReDoc, like Swagger UI, would load its scripts from a CDN
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(ErrorShield)
    app.add_middleware(RequestMetrics, metrics=service.metrics)  # outermost: sees 413s too
    _add_error_handlers(app)
    require_key = _key_check(settings)
    _add_predict_route(app, service, require_key)
    _add_info_routes(app, service, require_key)
    _add_docs_routes(app, require_key)
    return app


def _check_log_options(settings: ServeSettings) -> None:
    """The log's options mean nothing without a log: refused before the model loads."""
    if settings.log is None and (
        settings.store_images is not None or settings.log_max_rows or settings.log_max_days
    ):
        raise ImgrecError("--store-images, --log-max-rows and --log-max-days need --log FILE.")


def _open_service(model_path: str | Path, settings: ServeSettings) -> _Service:
    predictor = Predictor(model_path, settings.engine, settings.max_batch)
    metrics = Metrics()
    prediction_log = _open_log(settings, predictor)
    if prediction_log is not None:
        metrics.log_counts = lambda: (prediction_log.rows_written, prediction_log.rows_dropped)
    batcher = MicroBatcher(
        predictor.run,
        max_batch=settings.max_batch,
        max_wait_s=settings.max_wait_ms / 1000,
        on_batch=metrics.record_batch,
    )
    pixels = PixelBudget(settings.max_request_pixels)
    return _Service(settings, predictor, metrics, batcher, prediction_log, pixels)


def _lifespan(service: _Service):
    """Start the batcher with the server; on shutdown stop it and flush the log."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()
            if service.log is not None:  # every queued row reaches the file before exit
                await asyncio.to_thread(service.log.close)

    return lifespan


def _key_check(settings: ServeSettings):
    """The dependency that guards /v1/*: a no-op unless `settings.api_key` is set."""
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

    def require_key(key: str | None = Depends(key_header)) -> None:
        """Constant-time comparison, so the key cannot be guessed byte by byte from timing."""
        expected = settings.api_key
        if expected is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(401, "missing or wrong API key: send it in the X-API-Key header")

    return require_key


def _add_predict_route(app: FastAPI, service: _Service, require_key) -> None:
    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra={"requestBody": PREDICT_BODY},
        dependencies=[Depends(require_key)],
    )
    async def predict(
        request: Request,
        top_k: int = Query(
            service.settings.default_top_k, ge=1, le=1000, description="Classes per image"
        ),
        min_confidence: float | None = Query(
            None,
            ge=0,
            lt=1,
            description="Answer 'unknown' below this top-1 probability (default: the server's)",
        ),
    ) -> PredictResponse:
        """Classify one or several images (multipart `files`, or a raw image/* body); the
        minimum confidence may also come as a form field next to the files."""
        return await _predict(service, request, top_k, min_confidence)


async def _predict(
    service: _Service, request: Request, top_k: int, min_confidence: float | None
) -> PredictResponse:
    start = time.perf_counter()
    predictor = service.predictor
    _refuse_unknown_parameters(request)
    uploads = await read_uploads(request, service.settings.max_files)
    threshold = _min_confidence(
        min_confidence, await form_number(request, "min_confidence"), service.settings
    )
    images = await _decode(service, uploads)
    probs, signatures = await service.batcher.predict(images)
    service.metrics.record_images(len(uploads))
    names = [name for name, _ in uploads]
    out = [
        PredictionOut(
            filename=p.path,
            label=answer_label(p.classes, p.probabilities, threshold),
            labels=p.classes,
            probabilities=p.probabilities,
        )
        for p in predictor.top_k(names, probs, top_k)
    ]
    if service.log is not None:  # only queues: the work happens on the log's thread
        data = [data for _, data in uploads]
        labels = [p.label for p in out]  # 'unknown' where the answer abstained
        service.log.record(names, probs, data, signatures=signatures, inputs=images, labels=labels)
    return PredictResponse(
        predictions=out,
        min_confidence=threshold,
        latency_ms=round((time.perf_counter() - start) * 1000, 2),
    )


def _refuse_unknown_parameters(request: Request) -> None:
    """A misspelt parameter (`topk=1`) is an error, not silently the default."""
    unknown = sorted(set(request.query_params.keys()) - PREDICT_PARAMETERS)
    if unknown:
        raise ApiError(
            422,
            f"unknown query parameter '{unknown[0][:40]}': /v1/predict takes "
            + " and ".join(sorted(PREDICT_PARAMETERS)),
        )


async def _decode(service: _Service, uploads: list[tuple[str, bytes]]) -> torch.Tensor:
    """The uploads as one (N, 3, S, S) batch; 413 when their headers promise more pixels than
    the budget, so a few kilobytes of PNG cannot make the server decode gigabytes."""
    predictor = service.predictor
    draft = predictor.preprocessing.resize_size
    pixels = await asyncio.to_thread(request_pixels, [data for _, data in uploads], draft)
    limit = service.settings.max_request_pixels
    if pixels > limit:
        raise ApiError(413, over_budget_message(pixels, limit, len(uploads)))
    async with service.pixels.hold(pixels):
        tensors = await asyncio.gather(*(_prepare(predictor, n, data) for n, data in uploads))
    if pixels > TRIM_AFTER_PIXELS:  # the decoded images are freed by now: give the memory back
        await asyncio.to_thread(release_free_memory)
    return torch.stack(tensors)


def _add_info_routes(app: FastAPI, service: _Service, require_key) -> None:
    """The model's description, liveness, Prometheus metrics and the prediction page."""
    page = files("imgrec.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/v1/model", dependencies=[Depends(require_key)], responses={**_errors(401), **ALWAYS})
    async def model_info() -> dict:
        """The model's classes, backbone, preprocessing and validation metrics."""
        return {
            **service.predictor.describe(),
            "max_upload_bytes": service.settings.max_upload_bytes,
            "max_request_megapixels": service.settings.max_request_pixels / 1e6,
            "min_confidence": service.settings.min_confidence,
        }

    @app.get("/healthz", responses=ALWAYS)
    async def healthz() -> dict:
        """Liveness for load balancers; needs no API key."""
        return {"status": "ok", "classes": len(service.predictor.classes)}

    @app.get("/metrics", response_class=PlainTextResponse, responses=ALWAYS)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests, latency histogram, errors, images, batch sizes."""
        return PlainTextResponse(
            service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)


def _add_docs_routes(app: FastAPI, require_key) -> None:
    """/openapi.json and /docs: the schema names the classes, so they need the key too."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_key)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require_key)])
    async def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()), headers=DOCS_HEADERS)


def _min_confidence(query: float | None, form: float | None, settings: ServeSettings) -> float:
    """The request's own minimum confidence (query, else form field), else the server's; a
    value out of range is refused wherever it was sent, also when the other one wins."""
    for value in (query, form):
        if value is not None and not 0 <= value < 1:
            raise ApiError(422, f"min_confidence must be at least 0 and below 1, got {value:g}")
    chosen = query if query is not None else form
    return settings.min_confidence if chosen is None else chosen


def _open_log(settings: ServeSettings, predictor: Predictor) -> PredictionLog | None:
    if settings.log is None:
        return None
    return PredictionLog(
        settings.log,
        predictor.path,
        predictor.classes,
        predictor.preprocessing,
        source="serve",
        store_images=settings.store_images,
        max_rows=settings.log_max_rows,
        max_days=settings.log_max_days,
        when_full="drop",  # a slow disk must not make requests wait
    )


async def _prepare(predictor: Predictor, filename: str, data: bytes) -> torch.Tensor:
    try:
        return await asyncio.to_thread(predictor.prepare, data)
    except UnreadableImage as exc:
        raise ApiError(422, f"{filename} is not a usable image: {exc}", filename) from None


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is `{"error": ..., "filename": ...}` JSON, including FastAPI's own."""

    def reply(status: int, message: str, filename: str | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "filename": filename}, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return reply(exc.status, exc.message, exc.filename)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return reply(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return reply(422, "; ".join(parts) or "invalid request")
