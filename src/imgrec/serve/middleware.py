"""Three pure-ASGI middlewares: the upload size limit, the error shield, per-request metrics.

Pure ASGI rather than Starlette's BaseHTTPMiddleware so that the size limit sees the body
as it streams in (chunked uploads have no Content-Length) and can answer 413 before a
20 GB upload reaches the disk, and so that the shield catches what escapes everything else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from imgrec.runtime import release_free_memory
from imgrec.serve.metrics import Metrics

# After a request body this large, freed memory goes back to the OS (the process keeps freed
# heap otherwise, see runtime.py), so a burst of big or oversized uploads does not leave RSS up.
TRIM_AFTER_BYTES = 4 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("imgrec.serve")

OUT_OF_MEMORY = (
    "the server ran out of memory for this request: send fewer or smaller images, "
    "or try again later"
)
INTERNAL_ERROR = "internal error: the server could not answer this request (its log says why)"

ENDPOINTS = frozenset(
    {"/", "/v1/predict", "/v1/model", "/healthz", "/metrics", "/docs", "/openapi.json"}
)


class _TooLarge(Exception):
    """Raised from `receive` once the body passes the limit; turned into a 413 below."""


async def send_json(send: Send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """Answer 413 with a JSON error when a request body is larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> dict:
        mb = self.max_bytes / (1024 * 1024)
        return {"error": f"the upload is larger than the limit of {mb:g} MB", "filename": None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json(send, 413, self._error())
            return
        received = 0
        watched = _WatchedSend(send)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, watched)
        except _TooLarge:
            if watched.started:
                raise
            await send_json(send, 413, self._error())
        finally:
            if received > TRIM_AFTER_BYTES:
                await asyncio.to_thread(release_free_memory)


class _WatchedSend:
    """`send` that remembers whether the answer has started: after that no other answer (a
    413, a JSON 500) can be sent, only the connection closed."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class ErrorShield:
    """Any exception that escapes the app becomes JSON: 503 for MemoryError, 500 otherwise.

    Without it Starlette answers "Internal Server Error" in plain text, which clients that
    parse JSON choke on. A MemoryError also hands freed memory back to the OS at once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = _WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except MemoryError:
            logger.error("out of memory answering %s %s", scope["method"], scope["path"])
            await asyncio.to_thread(release_free_memory)
            if watched.started:  # half an answer is out: closing the connection is all that is left
                raise
            await send_json(send, 503, {"error": OUT_OF_MEMORY, "filename": None})
        except Exception:
            logger.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if watched.started:
                raise
            await send_json(send, 500, {"error": INTERNAL_ERROR, "filename": None})


class RequestMetrics:
    """Count every request by endpoint and status and time it, including 401s and 413s."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = 500
        start = time.perf_counter()

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            self.metrics.record_request(endpoint, status, time.perf_counter() - start)
