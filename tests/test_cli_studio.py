"""`imgrec studio` as a user starts it: one sentence when it cannot, a token off loopback."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request

from runhelpers import assert_user_error, run_imgrec, start_imgrec, wait_for
from servehelpers import free_port


def test_a_home_that_cannot_be_a_folder_is_one_sentence(tmp_path):
    home = tmp_path / "file"
    home.write_text("not a folder")
    result = run_imgrec("studio", "--home", home, "--no-browser", timeout=60)
    assert_user_error(result, "cannot keep projects in", "--home")


def test_a_port_in_use_is_one_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_imgrec("studio", "--home", tmp_path, "--port", port, "--no-browser")
    assert_user_error(result, "already in use", "--port")


def test_off_loopback_the_studio_makes_a_token_and_requires_it(tmp_path):
    port = free_port()
    log = tmp_path / "studio.log"
    process = start_imgrec(
        "studio",
        "--home",
        tmp_path / "home",
        "--host",
        "0.0.0.0",
        "--port",
        port,
        "--no-browser",
        log=log,
    )
    banner = log.with_suffix(".out")
    try:
        wait_for(lambda: "token=" in banner.read_text(), process, 60, "the link", log)
        token = re.search(r"\?token=([\w-]+)", banner.read_text()).group(1)
        url = f"http://127.0.0.1:{port}/api/info"
        try:
            urllib.request.urlopen(url, timeout=10)
            raise AssertionError("answered without the token")
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
