"""Shared by the serve and studio tests: a small trained model and a real server.

The server is `python -m imgrec serve` (or `studio`) in a subprocess on a free port, exactly
as a user starts it; tests talk to it over real HTTP.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runhelpers import cli_env, make_split_dataset, wait_for


def small_model(base: Path) -> Path:
    """A head-only model on 4 + 2 sample photos per class (seconds); reused when it exists."""
    model = base / "serve-model" / "model.imgrec"
    if model.exists():
        return model
    from imgrec import ImageClassifier, load_dataset

    ds = load_dataset(make_split_dataset(base / "serve-data", n_train=4, n_val=2))
    clf = ImageClassifier(epochs=0, seed=0)
    clf.fit(ds.subset("train"), ds.subset("val"), progress=False)
    clf.save(model)
    return model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def answers(url: str) -> bool:
    """True when GET `url` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_server(
    model: Path,
    log: Path,
    *args: str,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """Start `imgrec serve MODEL` on a free port, wait for /healthz, stop it afterwards.

    `preexec_fn` runs in the child before it starts (e.g. to lower its resource limits).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "imgrec", "serve", str(model), "--port", str(port), *args]
    with open(log, "w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**cli_env(), **(env or {})},
            preexec_fn=preexec_fn,
        )
    try:
        wait_for(
            lambda: answers(f"{url}/healthz"), process, 120, "the server answered /healthz", log
        )
        yield Server(url, process, log)
    finally:
        stop(process)


@contextlib.contextmanager
def running_studio(home: Path, log: Path, *args: str, port: int | None = None) -> Iterator[Server]:
    """Start `imgrec studio --home HOME --no-browser` on a free port (or `port`), wait for
    /api/info, stop it afterwards (SIGTERM, as Ctrl-C would; its workers are left alone)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "imgrec", "studio", "--home", str(home), "--port", str(port)]
    with open(log, "a", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [*command, "--no-browser", *args], stdout=sink, stderr=subprocess.STDOUT, env=cli_env()
        )
    try:
        wait_for(
            lambda: answers(f"{url}/api/info"), process, 120, "the studio answered /api/info", log
        )
        yield Server(url, process, log)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (what Ctrl-C or a service manager sends), SIGKILL after 15 s of not stopping."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Headless Chromium as the browser tests run it: nothing fetched in the background.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_missing_message() -> str | None:
    """None when headless Chromium can run here, else what to do about it."""
    if os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver"):
        return None
    return "Chromium and chromedriver are not installed: run `make browser` (needs apt-get)."
