"""Two "hosts" on one machine: two Linux network namespaces joined by a veth pair.

Multi-node training (torchrun's rendezvous, gloo or NCCL sockets) and Ray clusters must be
tested over a real network, where the other machine has its own address, its own ports and
its own loopback; two network namespaces give exactly that on one CI machine, in a tenth of
a second. They need root (CI runs as root); `can_make_namespaces()` says why not elsewhere.

    with two_hosts() as (head, worker):
        port = free_port(head)
        server = head.run([sys.executable, "-m", "http.server", "-b", head.address, str(port)])
        worker.run_wait(["curl", f"http://{head.hostname}:{port}/"], timeout=10)

In a test, ask for the `two_hosts` fixture (import `two_hosts_fixture` into the test module,
as conftest does with s3server's fixtures) and mark the module with `needs_namespaces`.

Inside both namespaces `host0` and `host1` resolve to the two addresses, and the machine's
own hostname resolves to the namespace's own address (an /etc/hosts that `ip netns exec`
mounts from /etc/netns/NAME/), so a library that finds "its" address through the hostname
(gloo does) picks the veth, not an interface that does not exist in the namespace.

Everything started in a namespace is killed and the namespaces are deleted when the block
ends, however it ends; namespaces left by a killed test session (its pid is gone) are
removed by the next `two_hosts()`.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

IP = shutil.which("ip")
PREFIX = "imgrec-"  # namespace names: imgrec-<pid>-<n>-<0|1>; the pid finds leftovers
INTERFACE = "veth0"  # the veth end's name inside each namespace
HOSTNAMES = ("host0", "host1")
NETNS_ETC = Path("/etc/netns")  # `ip netns exec NAME` bind-mounts NETNS_ETC/NAME/* over /etc/*
REQUIRE_ENV = "IMGREC_REQUIRE_NETNS"  # set to 1 (in CI, say) to fail instead of skipping
_STALE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")
_counter = itertools.count()


@dataclass
class Host:
    """One namespace: a machine with one network interface (`interface`, at `address`)."""

    name: str  # the namespace's name, for `ip netns exec NAME`
    address: str  # IPv4 address of its veth end (a /24 shared with the other host)
    hostname: str  # host0 or host1: resolves to `address` inside both namespaces
    interface: str = INTERFACE
    started: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def command(self, cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
        """`cmd` as an argv that runs it in this namespace."""
        return [_ip(), "netns", "exec", self.name, *map(os.fspath, cmd)]

    def run(self, cmd: Sequence[str | os.PathLike[str]], **popen_kwargs) -> subprocess.Popen:
        """Start `cmd` in this namespace (Popen keywords: env, cwd, stdout, ...). It runs in a
        session of its own, so `os.killpg(proc.pid, sig)` reaches its children too; the block's
        end kills whatever is left of it."""
        popen_kwargs["start_new_session"] = True
        proc = subprocess.Popen(self.command(cmd), **popen_kwargs)
        self.started.append(proc)
        return proc

    def run_wait(
        self, cmd: Sequence[str | os.PathLike[str]], timeout: float = 30.0, **popen_kwargs
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` in this namespace to its end; stdout and stderr captured as text unless
        given. Past `timeout` seconds its process group is killed and TimeoutExpired raised
        (with what it wrote so far)."""
        popen_kwargs.setdefault("stdout", subprocess.PIPE)
        popen_kwargs.setdefault("stderr", subprocess.PIPE)
        popen_kwargs.setdefault("text", True)
        proc = self.run(cmd, **popen_kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def pids(self) -> list[int]:
        """Every process whose network namespace is this one (whoever started it)."""
        listed = subprocess.run(
            [_ip(), "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        return [int(p) for p in listed.stdout.split()]


class TwoHosts(NamedTuple):
    """The two hosts: `first, second = hosts` or hosts[0], hosts[1]."""

    first: Host
    second: Host


def free_port(host: Host) -> int:
    """A TCP port free on `host.address` now: the kernel's pick for a socket bound there, in
    the namespace. The socket closes before the port is used, so another process could take
    it in between; nothing else runs in a fresh namespace, so nothing does."""
    probe = (
        "import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); "
        "print(s.getsockname()[1])"
    )
    result = host.run_wait([sys.executable, "-c", probe, host.address], timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"no free port on {host.name}: {result.stderr.strip()}")
    return int(result.stdout)


@functools.cache
def can_make_namespaces() -> str | None:
    """None when this process can make the two hosts; else why not, in one sentence."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "not root: network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if IP is None:
        return "no `ip` command on PATH (install iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    steps = (
        ["netns", "add", probe],
        ["-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
    )
    try:
        for step in steps:
            failed = _ip_error(step)
            if failed:
                return f"`ip {' '.join(step)}` failed ({failed}): no CAP_NET_ADMIN here?"
        NETNS_ETC.mkdir(exist_ok=True)
        if not os.access(NETNS_ETC, os.W_OK):
            return f"{NETNS_ETC} is not writable (the hosts' /etc/hosts live there)"
    finally:
        _ip_error(["netns", "del", probe])
    return None


def _skip_reason() -> str | None:
    """Why namespace tests skip, said loudly (a warning in pytest's summary, as well as the
    skip reason); None when they run, or when REQUIRE_ENV asks them to fail instead."""
    reason = can_make_namespaces()
    if reason is None or os.environ.get(REQUIRE_ENV) == "1":
        return None
    warnings.warn(f"network-namespace tests skipped: {reason}", stacklevel=2)
    return reason


@contextmanager
def two_hosts() -> Iterator[TwoHosts]:
    """Two namespaces joined by a veth pair on a private /24, loopback and veth up in both;
    on exit every process in them is killed (SIGTERM, then SIGKILL after 3 s) and both are
    deleted, also on an exception or Ctrl-C."""
    reason = can_make_namespaces()
    if reason is not None:
        raise RuntimeError(f"cannot make two hosts: {reason}")
    remove_stale_namespaces()
    stem = f"{PREFIX}{os.getpid()}-{next(_counter)}"
    subnet = _private_subnet()
    hosts = TwoHosts(
        *(
            Host(name=f"{stem}-{i}", address=str(subnet[i + 1]), hostname=HOSTNAMES[i])
            for i in range(2)
        )
    )
    try:
        _connect(hosts, subnet.prefixlen)
        yield hosts
    finally:
        _remove(hosts)


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces of test sessions that are gone (killed before their cleanup);
    returns their names."""
    listed = subprocess.run([_ip(), "netns", "list"], capture_output=True, text=True, check=False)
    stale = []
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _STALE.match(name)
        if match and not _alive(int(match.group(1))):
            stale.append(name)
    for name in stale:
        _remove_namespace(Host(name=name, address="", hostname=""))
    return stale


def _connect(hosts: TwoHosts, prefixlen: int) -> None:
    first, second = hosts
    for host in hosts:
        _ip_check(["netns", "add", host.name])
    _ip_check(
        ["-n", first.name, "link", "add", INTERFACE, "type", "veth"]
        + ["peer", "name", INTERFACE, "netns", second.name]
    )
    for host in hosts:
        _ip_check(["-n", host.name, "addr", "add", f"{host.address}/{prefixlen}", "dev", INTERFACE])
        _ip_check(["-n", host.name, "link", "set", "lo", "up"])
        _ip_check(["-n", host.name, "link", "set", INTERFACE, "up"])
        _write_hosts_file(host, hosts)


def _write_hosts_file(host: Host, hosts: TwoHosts) -> None:
    """/etc/hosts as seen in `host`: both hosts by name, this machine's name as `host`."""
    folder = NETNS_ETC / host.name
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", "::1 localhost"]
    lines += [f"{h.address} {h.hostname}" for h in hosts]
    # the same as IPv6-mapped addresses, which a dual-stack server (c10d's store) sees its
    # callers at: else their reverse lookup goes to DNS, and warns or waits
    lines += [f"::ffff:{h.address} {h.hostname}" for h in hosts]
    lines.append(f"{host.address} {socket.gethostname()}")
    (folder / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _private_subnet() -> ipaddress.IPv4Network:
    """A random 10.a.b.0/24 that overlaps no route of this machine (the namespaces have
    their own routing tables, but an address that also means something outside them would
    make a failing test hard to read)."""
    listed = subprocess.run(
        [_ip(), "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    )
    taken = []
    for line in listed.stdout.splitlines():
        words = [w for w in line.split() if w not in ("local", "broadcast", "unicast")]
        with suppress(ValueError, IndexError):
            taken.append(ipaddress.ip_network(words[0], strict=False))
    pick = random.SystemRandom()
    for _ in range(1000):
        subnet = ipaddress.ip_network(f"10.{pick.randrange(1, 255)}.{pick.randrange(256)}.0/24")
        if not any(subnet.overlaps(t) for t in taken if t.prefixlen > 0):
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet: every one overlaps a route here")


def _remove(hosts: TwoHosts) -> None:
    """Kill what runs in the hosts, reap what this process started, delete the namespaces
    (their veth ends go with them)."""
    for host in hosts:
        _signal_pids(host, signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    while any(host.pids() for host in hosts) and time.monotonic() < deadline:
        time.sleep(0.05)
    for host in hosts:
        _remove_namespace(host)


def _remove_namespace(host: Host) -> None:
    for _ in range(50):  # a process may fork while it is being killed
        if not _signal_pids(host, signal.SIGKILL):
            break
        time.sleep(0.02)
    for proc in host.started:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    _ip_error(["netns", "del", host.name])
    shutil.rmtree(NETNS_ETC / host.name, ignore_errors=True)


def _signal_pids(host: Host, sig: signal.Signals) -> list[int]:
    pids = host.pids()
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ip() -> str:
    if IP is None:
        raise RuntimeError("no `ip` command on PATH (install iproute2)")
    return IP


def _ip_error(args: list[str]) -> str:
    """Run `ip ARGS`; its error message, or "" when it worked."""
    result = subprocess.run([_ip(), *args], capture_output=True, text=True, check=False)
    return "" if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def _ip_check(args: list[str]) -> None:
    failed = _ip_error(args)
    if failed:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {failed}")


# Computed at import, after every helper it runs is defined.
_reason = _skip_reason()
needs_namespaces = pytest.mark.skipif(
    _reason is not None, reason=f"two-host tests need network namespaces: {_reason}"
)


@pytest.fixture(name="two_hosts")
def two_hosts_fixture() -> Iterator[TwoHosts]:
    """The two hosts for one test; skipped (loudly) where namespaces cannot be made, failed
    instead when REQUIRE_ENV=1."""
    reason = can_make_namespaces()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1, but {reason}")
        pytest.skip(f"two-host tests need network namespaces: {reason}")
    with two_hosts() as hosts:
        yield hosts
