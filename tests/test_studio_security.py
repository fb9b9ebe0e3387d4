"""The studio's guard: token, Host check (DNS rebinding) and cross-site check (CSRF)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from imgrec.studio.security import COOKIE, StudioGuard, is_loopback, new_token


async def _ok(request):
    return JSONResponse({"ok": True, "method": request.method})


def client(token: str | None = None, loopback: bool = True, host: str = "127.0.0.1:8765"):
    inner = Starlette(routes=[Route("/api/x", _ok, methods=["GET", "POST", "DELETE"])])
    guarded = StudioGuard(inner, token=token, loopback_only=loopback)
    return TestClient(guarded, base_url=f"http://{host}", follow_redirects=False)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("10.0.0.2", False),
        ("a.org", False),
    ],
)
def test_loopback_addresses(host, expected):
    assert is_loopback(host) is expected


def test_loopback_studio_answers_only_to_loopback_host_names():
    assert client().get("/api/x").status_code == 200
    assert client(host="localhost:8765").get("/api/x").status_code == 200
    rebound = client(host="evil.example:8765").get("/api/x")
    assert rebound.status_code == 421
    assert "127.0.0.1" in rebound.json()["error"]


def test_changes_from_another_sites_page_are_refused():
    c = client()
    assert c.post("/api/x", headers={"Origin": "http://127.0.0.1:8765"}).status_code == 200
    assert c.post("/api/x").status_code == 200  # scripts and curl send no Origin
    for header in ({"Origin": "https://evil.example"}, {"Origin": "null"}):
        answer = c.post("/api/x", headers=header)
        assert answer.status_code == 403
        assert "another site" in answer.json()["error"]
    referer = {"Referer": "https://evil.example/page"}
    assert c.delete("/api/x", headers=referer).status_code == 403
    assert c.get("/api/x", headers={"Origin": "https://evil.example"}).status_code == 200


def test_token_by_header_cookie_or_link():
    token = new_token()
    c = client(token=token, loopback=False, host="192.168.1.5:8765")
    missing = c.get("/api/x")
    assert missing.status_code == 401
    assert "token" in missing.json()["error"]
    assert c.get("/api/x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    link = c.get(f"/api/x?token={token}&a=1")
    assert link.status_code == 303
    assert link.headers["location"] == "/api/x?a=1"  # the token leaves the address bar
    assert f"{COOKIE}={token}" in link.headers["set-cookie"]
    assert "HttpOnly" in link.headers["set-cookie"]
    c.cookies.set(COOKIE, token)
    assert c.get("/api/x").status_code == 200
    c.cookies.clear()
    c.cookies.set(COOKIE, "guess")
    assert c.get("/api/x").status_code == 401
