"""A real `imgrec studio` process killed mid-upload and mid-training: nothing is lost.

After a kill -9 and a restart the project is an intact dataset (no half-written image), and a
training job either ran on (its worker outlives the server) or, when the worker died too, is
marked interrupted and resumes from its checkpoint to a finished run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from runhelpers import sample_files
from servehelpers import free_port, running_studio

from imgrec.data.dataset import load_dataset


def call(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def upload(url: str, pid: str, cls: str, files: list[Path]) -> dict:
    boundary = "imgrecboundary"
    parts = []
    for f in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{f.name}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + f.read_bytes()
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/api/projects/{pid}/classes/{cls}/images", data=body, method="POST"
    )
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def project_with_sample(url: str, per_class: int) -> str:
    pid = call(f"{url}/api/projects", "POST", {"name": "Insects"})["id"]
    for label in ("ants", "bees"):
        call(f"{url}/api/projects/{pid}/classes", "POST", {"name": label})
        files = sample_files("train", label, per_class) + sample_files("val", label, 4)
        assert len(upload(url, pid, label, files)["added"]) == len(files)
    return pid


def test_server_killed_mid_upload_leaves_the_project_intact(tmp_path):
    home, port = tmp_path / "home", free_port()
    with running_studio(home, tmp_path / "studio.log", port=port) as studio:
        pid = project_with_sample(studio.url, per_class=3)
        # Half of a 3 MB upload, then the server dies.
        sock = socket.create_connection(("127.0.0.1", port))
        head = (
            f"POST /api/projects/{pid}/classes/ants/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 3000000\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="files"; filename="half.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        sock.sendall(head + sample_files("train", "ants", 1)[0].read_bytes() + b"\0" * 1_000_000)
        time.sleep(0.5)
        os.kill(studio.process.pid, signal.SIGKILL)
        studio.process.wait()
        sock.close()
    with running_studio(home, tmp_path / "studio.log", port=port) as studio:
        counts = {
            c["name"]: c["count"] for c in call(f"{studio.url}/api/projects/{pid}")["classes"]
        }
        assert counts == {"ants": 7, "bees": 7}
    assert len(load_dataset(home / pid / "data").samples) == 14
    leftovers = [p for p in (home / pid).rglob("*half*")]
    assert leftovers == []


def wait_job(url: str, pid: str, jid: str, statuses: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call(f"{url}/api/projects/{pid}/jobs/{jid}")
        if job["status"] in statuses:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {jid} never reached {statuses}: {job}")


@pytest.mark.slow
def test_training_survives_the_server_and_resumes_after_its_worker_dies(tmp_path):
    home, port = tmp_path / "home", free_port()
    log = tmp_path / "studio.log"
    with running_studio(home, log, port=port) as studio:
        pid = project_with_sample(studio.url, per_class=8)
        options = {"epochs": 3}
        job = call(
            f"{studio.url}/api/projects/{pid}/jobs", "POST", {"kind": "train", "options": options}
        )
        wait_job(studio.url, pid, job["id"], {"running"})
        os.kill(studio.process.pid, signal.SIGKILL)  # the server dies; its worker does not
        studio.process.wait()
    with running_studio(home, log, port=port) as studio:
        state = call(f"{studio.url}/api/projects/{pid}/jobs/{job['id']}")
        assert state["status"] in ("running", "done"), state
        if state["status"] == "running":  # now the worker dies too, mid-run
            worker = json.loads(
                (home / pid / ".studio" / "jobs" / job["id"] / "job.json").read_text()
            )
            os.killpg(worker["pid"], signal.SIGKILL)
            interrupted = wait_job(studio.url, pid, job["id"], {"interrupted", "done"})
            if interrupted["status"] == "interrupted":
                call(f"{studio.url}/api/projects/{pid}/jobs/{job['id']}/resume", "POST", {})
        done = wait_job(studio.url, pid, job["id"], {"done", "failed"})
        assert done["status"] == "done", done
        results = call(f"{studio.url}/api/projects/{pid}/runs/{done['run']}")
        assert 0.0 <= results["accuracy"] <= 1.0
    assert (home / pid / "runs" / done["run"] / "model.imgrec").is_file()
