"""The studio's page in headless Firefox, driven over WebDriver BiDi (Firefox's own remote
protocol, so no geckodriver): the project list, a class's thumbnail grid, adding a class and
a class name with markup shown as text, with nothing on the console.

The whole beginner flow runs in Chromium (test_studio_browser.py); this checks that the same
ES modules load and work in the other engine. `make browser` installs firefox-esr.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request

import pytest
from imagegen import write_rgb
from servehelpers import free_port, running_studio, stop

pytestmark = pytest.mark.slow

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
EVIL = "<img src=x onerror=window.pwned=1>"


def call(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


class Bidi:
    """The few WebDriver BiDi commands the test needs, over one websocket."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.sent = 0
        self.console: list[dict] = []
        self.context = ""

    async def send(self, method: str, params: dict) -> dict:
        self.sent += 1
        mine = self.sent
        await self.socket.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("method") == "log.entryAdded":
                self.console.append(message["params"])
            elif message.get("id") == mine:
                assert "error" not in message, message
                return message["result"]

    async def start(self) -> None:
        await self.send("session.new", {"capabilities": {}})
        await self.send("session.subscribe", {"events": ["log.entryAdded"]})
        tree = await self.send("browsingContext.getTree", {})
        self.context = tree["contexts"][0]["context"]

    async def open(self, url: str) -> None:
        params = {"context": self.context, "url": url, "wait": "complete"}
        await self.send("browsingContext.navigate", params)

    async def value(self, expression: str):
        """The value of an expression (awaited), polled until it is truthy or 20 s pass."""
        for _ in range(200):
            result = await self.send(
                "script.evaluate",
                {
                    "expression": expression,
                    "target": {"context": self.context},
                    "awaitPromise": True,
                },
            )
            value = result.get("result", {}).get("value")
            if value:
                return value
            await asyncio.sleep(0.1)
        return value


async def connect(port: int):
    import websockets

    for _ in range(200):
        try:
            return await websockets.connect(f"ws://127.0.0.1:{port}/session", max_size=None)
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("Firefox never opened its remote protocol port")


async def drive(url: str, pid: str, port: int) -> Bidi:
    socket = await connect(port)
    page = Bidi(socket)
    try:
        await page.start()
        await page.open(f"{url}/")
        assert await page.value("document.querySelector('h1')?.textContent") == "Your projects"
        await page.open(f"{url}/#/p/{pid}/images/blue")
        loaded = "[...document.querySelectorAll('.grid-scroller img')]"
        loaded += ".filter((i) => i.complete && i.naturalWidth > 0).length >= 4"
        assert await page.value(loaded)
        for name in ("green", EVIL):
            add = (
                "(() => { const i = document.querySelector('.add-class input');"
                f" i.value = {json.dumps(name)};"
                " document.querySelector('.add-class button[type=submit]').click();"
                " return true; })()"
            )
            await page.value(add)
            listed = "[...document.querySelectorAll('.class-item')]"
            listed += f".some((e) => e.dataset.cls === {json.dumps(name)})"
            assert await page.value(listed), name
        shown = "[...document.querySelectorAll('.class-item')].map((e) => e.textContent).join('|')"
        assert EVIL in await page.value(shown)
        assert await page.value("window.pwned === undefined")
    finally:
        await socket.close()
    return page


def test_the_page_works_in_firefox(tmp_path):
    assert FIREFOX, "Firefox is not installed: run `make browser` (needs apt-get)."
    for cls, colour in (("blue", (20, 40, 200)), ("red", (200, 30, 30))):
        for i in range(4):
            write_rgb(tmp_path / "photos" / cls / f"{i}.jpg", (64 + i, 48), colour)
    with running_studio(tmp_path / "home", tmp_path / "studio.log") as studio:
        pid = call(f"{studio.url}/api/projects", {"name": "Colours"})["id"]
        folder = {"path": str(tmp_path / "photos")}
        assert call(f"{studio.url}/api/projects/{pid}/import/folder", folder)["added"] == 8
        port = free_port()
        command = [FIREFOX, "--headless", "--no-remote", "--profile", str(tmp_path / "profile")]
        (tmp_path / "profile").mkdir()
        firefox = subprocess.Popen(
            [*command, "--remote-debugging-port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            page = asyncio.run(drive(studio.url, pid, port))
        finally:
            stop(firefox)
        classes = {c["name"] for c in call(f"{studio.url}/api/projects/{pid}")["classes"]}
    assert classes == {"blue", "red", "green", EVIL}
    errors = [entry for entry in page.console if entry.get("level") == "error"]
    assert not errors, errors
