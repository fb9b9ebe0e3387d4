"""`imgrec serve` against a hostile client (issue 15): memory, file descriptors, logs, exits.

Each test here reproduces one finding of an attack on the server; most use a real server in a
subprocess (tests/servehelpers.py), the exception paths an in-process app with a fault put in.
"""

from __future__ import annotations

import contextlib
import io
import logging
import resource
import socket
import time
from pathlib import Path

import httpx
import pytest
from imagegen import png_bomb_bytes
from runhelpers import assert_user_error, run_imgrec
from servehelpers import free_port, running_server, small_model

pytestmark = pytest.mark.slow

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.getbasetemp())


def _png(width: int, height: int) -> bytes:
    """A real, flat-coloured RGB PNG: small on the wire, width x height pixels when decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buf, "PNG")
    return buf.getvalue()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# ---- 1. an exception anywhere is a JSON answer, never plain text ------------------------------
@pytest.fixture(scope="module")
def app_client(model):
    from fastapi.testclient import TestClient

    from imgrec.serve import create_app

    with TestClient(create_app(model), raise_server_exceptions=False) as client:
        yield client


def test_memory_error_while_decoding_is_json_503(app_client, monkeypatch):
    from imgrec.serve.predictor import Predictor

    def exhausted(self, data: bytes):
        raise MemoryError

    monkeypatch.setattr(Predictor, "prepare", exhausted)
    response = app_client.post(
        "/v1/predict", content=_png(8, 8), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 503, response.text
    assert "memory" in response.json()["error"]


def test_unexpected_exception_is_json_500(app_client, monkeypatch):
    from imgrec.serve.predictor import Predictor

    def broken(self, filenames, probs, k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Predictor, "top_k", broken)
    response = app_client.post(
        "/v1/predict", content=_png(8, 8), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 500, response.text
    body = response.json()
    assert "internal error" in body["error"] and body["filename"] is None


# ---- 2. decoded pixels per request are bounded, memory goes back ------------------------------
def test_too_many_pixels_in_one_request_is_413(model, tmp_path):
    # 16 headers of 25 megapixels each: 400 MP for 1 KB on the wire, over the default 100 MP
    files = [("files", (f"p{i}.png", png_bomb_bytes(5000, 5000), "image/png")) for i in range(16)]
    with running_server(model, tmp_path / "log") as srv:
        start = time.perf_counter()
        response = httpx.post(f"{srv.url}/v1/predict", files=files, timeout=60)
        seconds = time.perf_counter() - start
        small = httpx.post(
            f"{srv.url}/v1/predict",
            files=[("files", ("p.png", png_bomb_bytes(5000, 5000), "image/png"))] * 3,
            timeout=60,
        )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert "400 megapixels" in error and "100" in error and error.count(".") <= 1
    assert seconds < 5
    assert small.status_code == 422  # 75 MP passes the budget; the decoder finds the lie


def test_pixel_budget_is_an_option(model, tmp_path):
    with running_server(model, tmp_path / "log", "--max-request-megapixels", "1") as srv:
        big = httpx.post(
            f"{srv.url}/v1/predict",
            content=_png(1500, 1000),
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        info = httpx.get(f"{srv.url}/v1/model", timeout=30).json()
    assert big.status_code == 413 and "1.5 megapixels" in big.json()["error"], big.text
    assert info["max_request_megapixels"] == 1


def test_memory_goes_back_after_a_large_decode(model, tmp_path):
    files = [("files", (f"big{i}.png", _png(6000, 4000), "image/png")) for i in range(3)]
    with running_server(model, tmp_path / "log") as srv:
        warm = [("files", ("w.png", _png(600, 400), "image/png"))]
        for _ in range(3):
            assert httpx.post(f"{srv.url}/v1/predict", files=warm, timeout=60).status_code == 200
        before = _rss_mb(srv.process.pid)
        response = httpx.post(f"{srv.url}/v1/predict", files=files, timeout=120)
        assert response.status_code == 200, response.text
        time.sleep(1)
        after = _rss_mb(srv.process.pid)
    # 72 megapixels decoded (over 200 MB of pixels); what stays must be far less
    assert after - before < 60, f"RSS {before:.0f} MB -> {after:.0f} MB after the request"


# ---- 3. idle connections cannot exhaust file descriptors or flood the log ---------------------
def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _healthz_status(url: str, timeout: float) -> int:
    """The status of GET /healthz on a fresh connection: 503 counts as an answer, too."""
    try:
        return httpx.get(f"{url}/healthz", timeout=timeout).status_code
    except httpx.HTTPError as exc:
        return {httpx.RemoteProtocolError: -2, httpx.ReadError: -2}.get(type(exc), -1)


def test_idle_connections_do_not_exhaust_file_descriptors(model, tmp_path):
    log = tmp_path / "log"
    with running_server(model, log, preexec_fn=_low_fd_limit) as srv:  # the defaults defend
        host, port = srv.url.removeprefix("http://").split(":")
        idle = []
        try:
            for _ in range(400):  # more than the server's 256 file descriptors
                idle.append(socket.create_connection((host, int(port)), timeout=5))
            time.sleep(1.5)
            start = time.perf_counter()
            first = _healthz_status(srv.url, timeout=5)
            answered_in = time.perf_counter() - start
            time.sleep(6)  # the idle connections time out (5 s), the server is free again
            later = _healthz_status(srv.url, timeout=5)
        finally:
            for s in idle:
                s.close()
        assert srv.alive()
    assert first in (200, 503, -2) and answered_in < 3, (first, answered_in)
    assert later == 200
    assert log.stat().st_size < 20_000, log.read_text(errors="replace")[-3000:]


def test_endless_headers_are_refused_and_memory_stays_flat(model, tmp_path):
    """A client that sends header after header (64 MB of them) gets a 400 once the request's
    head passes 64 KB and is cut off; the server's memory does not follow it."""
    with running_server(model, tmp_path / "log") as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        before = _rss_mb(srv.process.pid)
        line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        answer = b""
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # cut off
                for _ in range(64 * 1024):
                    sock.sendall(line)
            with contextlib.suppress(ConnectionResetError):  # the answer may be lost to it
                answer = sock.recv(4096)
        grew = _rss_mb(srv.process.pid) - before
        assert srv.alive()
        assert httpx.get(f"{srv.url}/healthz", timeout=10).status_code == 200
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert grew < 20, f"the server grew by {grew:.0f} MB"


def test_repeated_log_lines_are_summarised():
    from imgrec.serve.logs import RepeatFilter

    clock = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("imgrec.test.repeats")
    logger.propagate = False
    logger.addHandler(handler)
    logger.addFilter(RepeatFilter(every_s=10, clock=lambda: clock[0]))
    try:
        for i in range(5001):
            clock[0] = 12.0 if i == 5000 else i / 1000  # 5 s of the same error, then one more
            if i == 5000:
                logger.warning("something else")
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                logger.exception("socket.accept() out of system resource")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines.count("socket.accept() out of system resource") == 1
    assert "something else" in lines
    assert "socket.accept() out of system resource (repeated 5000 times in 12 s)" in lines
    assert len(lines) < 20  # one traceback, not five thousand


# ---- 4. the schema and docs follow the API key, and need no internet ---------------------------
def test_openapi_and_docs_need_the_key_when_one_is_set(model, tmp_path):
    args = ("--api-key-env", "IMGREC_TEST_KEY")
    with (
        running_server(model, tmp_path / "log", *args, env={"IMGREC_TEST_KEY": KEY}) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as anonymous,
    ):
        for path in ("/openapi.json", "/docs", "/redoc"):
            response = anonymous.get(path)
            assert response.status_code in (401, 404), (path, response.text)
            assert "ants" not in response.text and "error" in response.json()
        keyed = anonymous.get("/openapi.json", headers={"X-API-Key": KEY})
        assert keyed.status_code == 200 and "/v1/predict" in keyed.json()["paths"]
        docs = anonymous.get("/docs", headers={"X-API-Key": KEY})
        assert docs.status_code == 200 and "/v1/predict" in docs.text


def test_docs_page_is_offline(model, tmp_path):
    with running_server(model, tmp_path / "log") as srv:
        docs = httpx.get(f"{srv.url}/docs", timeout=30)
    assert docs.status_code == 200 and "/v1/predict" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text  # no CDN
    assert "default-src 'none'" in docs.headers["content-security-policy"]


# ---- 5. start-up failures are exit 1 with one sentence -----------------------------------------
def test_port_in_use_is_exit_1(model):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_imgrec("serve", model, "--port", port, timeout=120)
    assert_user_error(result, f"127.0.0.1:{port}", "already in use", "--port")


@pytest.mark.parametrize("host", ["203.0.113.7", "no-such-host.invalid"])
def test_bad_host_is_exit_1(model, host):
    result = run_imgrec("serve", model, "--host", host, "--port", free_port(), timeout=120)
    assert_user_error(result, f"{host}:", "--host")


def test_help_shows_connection_limits():
    result = run_imgrec("serve", "--help")
    assert result.returncode == 0
    for option in (
        "--max-connections",
        "--timeout-keep-alive",
        "--backlog",
        "--max-request-megapixels",
    ):
        assert option in result.stdout, result.stdout
    assert "default: 100" in result.stdout
