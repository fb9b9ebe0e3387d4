"""Running the app under uvicorn with the connection side hardened.

uvicorn alone keeps a connection that never sends a request open forever and accepts until
the process runs out of file descriptors; then every accept() fails and logs a traceback,
and /healthz can no longer get in. Here:

- at most `max_connections` connections are open at once: one more gets a JSON 503 and is
  closed straight away, so its descriptor is free again (and the cap is kept below the
  process's descriptor limit, with room for the model, the log and the threads);
- a connection must deliver a complete request's headers within `timeout_keep_alive_s` of
  opening or of its previous answer, or it is closed (slow or silent clients);
- a request's line and headers together may take at most MAX_HEAD_BYTES (httptools, unlike
  h11, sets no bound of its own), or the connection gets a 400 and is closed;
- repeated log lines are summarised (serve/logs.py);
- the socket is bound here, so a port in use or a wrong host ends in one sentence (exit 1)
  instead of uvicorn's exit 3, which imgrec uses for "drift found".
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from imgrec.errors import ImgrecError
from imgrec.serve.logs import limit_repeated_lines
from imgrec.serve.settings import ServeSettings

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; a browser's are a few KB
FD_RESERVE = 64  # descriptors kept for the model, the prediction log, threads and pipes
SHED_BODY = json.dumps(
    {"error": "the server is at its connection limit: try again in a moment", "filename": None}
).encode()
SHED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s"
    % (len(SHED_BODY), SHED_BODY)
)


def run_server(
    app: FastAPI,
    host: str,
    port: int,
    settings: ServeSettings,
    banner: list[str],
    say: Callable[[str], None] = print,
    sock: socket.socket | None = None,
) -> None:
    """Serve `app` on host:port until Ctrl-C or SIGTERM; ImgrecError if it cannot start.
    `sock`: the port, when the caller took it (`listen`) before the slow part of its start.

    `banner` is said once the port is ours, so a port in use prints only the error.
    """
    if sock is None:
        sock = listen(host, port, settings.backlog)
    for line in banner:
        say(line)
    max_connections = connection_cap(settings.max_connections, say)
    config = uvicorn.Config(
        app,
        log_level="info",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=max(1, round(settings.timeout_keep_alive_s)),
        backlog=settings.backlog,
        http=limited_protocol(max_connections, settings.timeout_keep_alive_s),
    )
    limit_repeated_lines()  # after uvicorn.Config, which sets up uvicorn's loggers
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:  # uvicorn's start-up failure (exit 3): the log above says why
        if exc.code not in (None, 0):
            raise ImgrecError(
                f"the server on {host}:{port} could not start; the lines above say why."
            ) from None
        raise
    finally:
        sock.close()


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on host:port, or ImgrecError naming them and what to do."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError):
        raise ImgrecError(
            f"cannot listen on {host}:{port}: {host} is not a known host name or address; "
            "use --host 127.0.0.1 (or 0.0.0.0 for every address of this machine)."
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ImgrecError(_bind_error(host, port, exc)) from None
    return sock


def _bind_error(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use; stop the other server or choose another --port."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: {host} is not an address of this machine; use --host 127.0.0.1 "
            "(or 0.0.0.0 for every address)."
        )
    if exc.errno == errno.EACCES:
        return (
            f"{where}: permission denied (ports below 1024 need root); choose a --port above 1023."
        )
    return f"{where}: {exc.strerror or exc}; check --host and --port."


def connection_cap(wanted: int, say: Callable[[str], None]) -> int:
    """`wanted`, lowered to fit the process's file-descriptor limit (raised first if allowed)."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE; the OS's own limits apply
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        target = wanted + FD_RESERVE if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
            soft = max(soft, target)
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or wanted <= soft - FD_RESERVE:
        return wanted
    fitted = max(1, soft - FD_RESERVE)
    say(
        f"at most {fitted} connections at once (not {wanted}): the process may open "
        f"{soft} files (ulimit -n)"
    )
    return fitted


def limited_protocol(max_connections: int, request_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a connection cap, a bound on each request's head and
    a deadline for it.

    httptools (llhttp, in C) rather than h11: a studio upload of 1,000 photos in batches of
    64 spent about a fifth of the server's time in h11's pure-Python parsing of the bodies."""
    limits = {"max_connections": max_connections, "request_timeout_s": request_timeout_s}
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), limits)


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parser error, which uvicorn
    answers with a 400 and a closed connection."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """Sheds connections over the cap; closes those that send no complete request in time or
    a request line and headers of more than MAX_HEAD_BYTES."""

    max_connections: int = 256
    request_timeout_s: float = 5.0
    _deadline: asyncio.TimerHandle | None = None
    _waiting_for: object = None  # the request cycle that was current when the wait began
    _head_bytes: int = 0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(SHED_RESPONSE)
            transport.close()
            return
        self._await_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._waiting_for:
            self._deadline.cancel()  # a request arrived: it may take as long as it needs
            self._deadline = None

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _await_request(self) -> None:
        """Unlike uvicorn's keep-alive timer, bytes that trickle in do not restart this one."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._waiting_for = self.cycle
        self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        idle = self.cycle is None or self.cycle.response_complete
        if self.cycle is self._waiting_for and idle and not self.transport.is_closing():
            self.timeout_keep_alive_handler()  # closes the connection cleanly
