"""Who may talk to the studio: the token, the Host check and the cross-site check.

The studio changes files on this machine, so three doors are shut:

- **Token.** Bound to anything but loopback, every request needs the token: header
  `Authorization: Bearer T`, the cookie the page gets, or `?token=T` once (the link the
  terminal prints), which sets that cookie and redirects to the same page without it, so the
  token does not stay in the address bar or the history.
- **Host.** On loopback the `Host` header must name a loopback address. Otherwise a web page
  on the internet could point its own domain at 127.0.0.1 (DNS rebinding) and read the API as
  if it were same-origin.
- **Cross-site requests.** A request that changes something (anything but GET, HEAD and
  OPTIONS) is refused when its `Origin` (or else `Referer`) names another site: a page
  elsewhere cannot make the browser post to the studio (CSRF). Requests without either
  header come from scripts and curl, which a browser page cannot imitate.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from imgrec.serve.middleware import ASGIApp, Receive, Scope, Send, send_json

COOKIE = "imgrec_studio_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def new_token() -> str:
    """A token a person can copy: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1, localhost: addresses no other machine can reach."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StudioGuard:
    """Pure-ASGI middleware enforcing the token, the Host check and the cross-site check."""

    def __init__(self, app: ASGIApp, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await send_json(send, refusal[0], {"error": refusal[1]})
            return
        if self.token and self._query_token(scope) is not None:
            await self._set_cookie_and_redirect(scope, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(_hostname(host)):
            return 421, (
                f"this studio answers only to 127.0.0.1 or localhost, not to '{host[:80]}'; "
                "open the address the terminal printed."
            )
        if self.token and not self._authorised(scope, headers):
            return 401, (
                "this studio needs its token: open the link with ?token=... that the terminal "
                "printed, or send the header 'Authorization: Bearer TOKEN'."
            )
        if scope["method"] not in SAFE_METHODS and _cross_site(headers, host):
            return 403, (
                "refused a change requested by another site's page; use the studio's own page."
            )
        return None

    def _authorised(self, scope: Scope, headers: dict[str, str]) -> bool:
        given = [self._query_token(scope)]
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is the same as none
            cookie = SimpleCookie()
        if COOKIE in cookie:
            given.append(cookie[COOKIE].value)
        expected = self.token.encode()
        return any(t is not None and hmac.compare_digest(t.encode(), expected) for t in given)

    @staticmethod
    def _query_token(scope: Scope) -> str | None:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        return values[0] if values else None

    async def _set_cookie_and_redirect(self, scope: Scope, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        query.pop("token", None)
        location = scope["path"] + (f"?{urlencode(query, doseq=True)}" if query else "")
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        body = json.dumps({"redirect": location}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _hostname(host_header: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1'; '[::1]:8765' -> '::1'."""
    return urlsplit(f"//{host_header}").hostname or ""


def _cross_site(headers: dict[str, str], host: str) -> bool:
    """True when the request names a page of another origin than this server's."""
    origin = headers.get("origin")
    if origin is None and "referer" in headers:
        origin = headers["referer"]
    if origin is None:
        return False
    if origin == "null":  # sandboxed frames, file:// pages: never the studio's own page
        return True
    return urlsplit(origin).netloc.lower() != host.lower()
