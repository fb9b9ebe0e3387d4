"""The two-host helper (tests/netns.py) gives two machines that talk over a real network.

A TCP server on one host is reached from the other at its veth address and sees the other
host's address as the caller; each host has its own loopback; the hosts resolve each other
by name; and nothing is left behind, whether the block ends normally or on an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netns import (
    HOSTNAMES,
    IP,
    NETNS_ETC,
    can_make_namespaces,
    free_port,
    needs_namespaces,
    remove_stale_namespaces,
    two_hosts,
    two_hosts_fixture,  # noqa: F401  (the `two_hosts` fixture)
)

pytestmark = needs_namespaces

# Accepts one connection on ADDRESS:PORT and answers "<caller's address> <what it sent>".
ECHO_SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
conn, (caller, _) = server.accept()
with conn:
    conn.sendall(caller.encode() + b" " + conn.recv(1024))
"""

# Sends "hello" to ADDRESS:PORT and prints the answer, or the error's name.
CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as conn:
        conn.sendall(b"hello")
        print(conn.recv(1024).decode())
except OSError as exc:
    print(type(exc).__name__)
"""


def _namespaces() -> str:
    return subprocess.run([IP, "netns", "list"], capture_output=True, text=True).stdout


def _orphan_sleep(host) -> int:
    """The pid of the `sleep` that setsid left running in `host` once setsid itself is gone."""
    deadline = time.monotonic() + 5
    while True:
        pids = host.pids()
        if len(pids) == 1 and Path(f"/proc/{pids[0]}/cmdline").read_bytes().startswith(b"sleep"):
            return pids[0]
        assert time.monotonic() < deadline, pids
        time.sleep(0.01)


def _running(pid: int) -> bool:
    """Whether `pid` runs (a killed orphan may stay a zombie until init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _serve(host, address: str, port: int) -> subprocess.Popen:
    server = host.run(
        [sys.executable, "-c", ECHO_SERVER, address, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout.readline().strip() == "listening"
    return server


def _call(host, address: str, port: int) -> str:
    result = host.run_wait([sys.executable, "-c", CLIENT, address, str(port)], timeout=10)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_server_on_one_host_answers_the_other_at_its_address(two_hosts):
    first, second = two_hosts
    assert first.address != second.address
    port = free_port(first)
    server = _serve(first, first.address, port)
    # the caller is seen at the second host's own address: the bytes crossed the veth
    assert _call(second, first.address, port) == f"{second.address} hello"
    assert server.wait(timeout=5) == 0


def test_each_host_has_its_own_loopback(two_hosts):
    first, second = two_hosts
    port = free_port(first)
    server = _serve(first, "127.0.0.1", port)
    assert _call(second, "127.0.0.1", port) == "ConnectionRefusedError"
    assert _call(first, "127.0.0.1", port) == "127.0.0.1 hello"  # it was listening all along
    assert server.wait(timeout=5) == 0


def test_the_hosts_resolve_each_other_and_themselves(two_hosts):
    lookup = "import socket, sys; print(*map(socket.gethostbyname, sys.argv[1:]))"
    for host in two_hosts:
        names = [*HOSTNAMES, "$(hostname)"]
        script = f'{sys.executable} -c "{lookup}" {" ".join(names)}'
        result = host.run_wait(["sh", "-c", script], timeout=10)
        assert result.returncode == 0, result.stderr
        # the machine's own hostname means this host's veth address (gloo binds there)
        assert result.stdout.split() == [two_hosts[0].address, two_hosts[1].address, host.address]


def test_everything_is_removed_after_the_block_even_on_an_error():
    with pytest.raises(KeyError), two_hosts() as hosts:
        sleeper = hosts.first.run(["sleep", "60"])
        # setsid forks: an orphan in a session of its own, not a child of this process
        hosts.second.run(["setsid", "sleep", "60"])
        orphan = _orphan_sleep(hosts.second)
        names = [h.name for h in hosts]
        assert all(name in _namespaces() for name in names)
        raise KeyError("the test failed")
    assert sleeper.poll() is not None
    assert not _running(orphan)
    assert not any(name in _namespaces() for name in names)
    assert not any((NETNS_ETC / name).exists() for name in names)


def test_a_run_past_its_timeout_is_killed_and_reported(two_hosts):
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        two_hosts.first.run_wait(["sh", "-c", "echo started; exec sleep 60"], timeout=0.5)
    assert timed_out.value.output.strip() == "started"
    assert two_hosts.first.pids() == []


def test_the_probe_leaves_nothing_behind():
    assert can_make_namespaces() is None
    assert "probe" not in _namespaces()


def test_namespaces_of_a_killed_session_are_removed_by_the_next():
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs: a session killed before its cleanup
    leftover = f"imgrec-{gone.pid}-0-0"
    subprocess.run([IP, "netns", "add", leftover], check=True)
    ours = f"imgrec-{os.getpid()}-999-0"  # this session's: alive, so kept
    subprocess.run([IP, "netns", "add", ours], check=True)
    try:
        assert remove_stale_namespaces() == [leftover]
        assert leftover not in _namespaces()
        assert ours in _namespaces()
    finally:
        subprocess.run([IP, "netns", "del", ours], check=False)
        subprocess.run([IP, "netns", "del", leftover], check=False)
