"""`imgrec serve` under load: throughput and latency with 16 concurrent clients, and a fault run.

Starts `imgrec serve MODEL` on 127.0.0.1 as a real process and drives it with an asyncio +
httpx load generator (one image per request, raw image/jpeg body, photos from --data cycled).
Load run: --clients (16) for --seconds (60); prints img/s, p50/p95/p99 latency, errors, and the
ratio to `imgrec predict --engine onnx`'s img/s measured on the same folder in the same run
(the mean of one run before the server starts and one after it stops, so drift cancels).
Fault run (--fault): --bad (200) bad requests — malformed multipart, wrong content types,
truncated images, zero bytes, a 50 MB upload (declared and chunked), pixel bombs, missing and
wrong API keys — sent concurrently with good traffic, against a server started with
--api-key-env. Every bad request must get a 4xx with a JSON body, every good one a 200, the
process must survive, and its RSS must come back near the baseline afterwards. Then two
attacks of issue 15, one after the other, against the same server, which runs with the common
default of 1024 open files (ulimit -n): a pixel flood (one request of 16 flat PNGs of 40
megapixels each, 640 MP for a few hundred KB: its status, seconds, the peak RSS and the RSS 5 s
later) and idle connections (3000 connections that send nothing, held for 10 s: how /healthz
answers meanwhile and after, and how many bytes the server's log grew).
Log run (--log): the same load against a server without the prediction log, one with
`--log FILE`, and one without again (the mean of the two without-runs is the baseline, so
drift cancels); prints both rates, their ratio, the server's CPU time per image in each, and the
images that got a 200 from the logging server (warm-up included) against the rows in its log
after it stopped (they must be equal).
Prints one JSON line per run.

    python benchmarks/serve.py [MODEL.imgrec] [--data DIR] [--seconds 60] [--fault | --log]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import DEFAULT_DATA, DEFAULT_MODEL, cli_predict, ensure_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from imagegen import png_bomb_bytes  # noqa: E402  (the tests' pixel bomb, one definition)

KEY = "bench-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _files_limit(n: int):
    """A preexec_fn giving the child at most `n` open files (soft and hard)."""

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return limit


class Server:
    def __init__(
        self,
        model: Path,
        log: Path,
        api_key: bool,
        extra: tuple[str, ...] = (),
        max_files: int | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "imgrec", "serve", str(model), "--port", str(self.port)]
        args += extra
        env = dict(os.environ)
        if api_key:
            args += ["--api-key-env", "IMGREC_BENCH_KEY"]
            env["IMGREC_BENCH_KEY"] = KEY
        self.log = log
        with open(log, "w") as sink:
            self.process = subprocess.Popen(
                args,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_files_limit(max_files) if max_files else None,
            )
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise SystemExit("the server did not answer /healthz within 180 s")

    def rss(self) -> float:
        return rss_mb(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def photos(data: Path) -> list[bytes]:
    files = sorted(f for f in data.rglob("*.jpg"))
    return [f.read_bytes() for f in files]


async def good_clients(
    url: str, images: list[bytes], clients: int, seconds: float, headers: dict, stop=None
) -> dict:
    """`clients` loops of one-image POSTs until `seconds` pass (or `stop` is set)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures: list[str] = []
    end = time.perf_counter() + seconds
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < end and not (stop and stop.is_set()):
            body = images[next(counter) % len(images)]
            start = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/predict",
                    content=body,
                    headers={"Content-Type": "image/jpeg", **headers},
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                elif len(failures) < 5:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                statuses[-1] = statuses.get(-1, 0) + 1
                failures.append(repr(exc)[:200])

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(clients)))
    wall = time.perf_counter() - started
    ok = statuses.get(200, 0)
    return {
        "requests": sum(statuses.values()),
        "ok": ok,
        "errors": sum(statuses.values()) - ok,
        "img_per_s": ok / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "failures": failures,
    }


# ---- bad requests ---------------------------------------------------------------------------
def png_bomb_real() -> bytes:
    """A real 1-bit 20000 x 20000 PNG (50 MB of pixels, ~60 KB on disk)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG", optimize=False)
    return buf.getvalue()


def bad_requests(good: bytes) -> list[tuple[str, dict]]:
    """(name, httpx request kwargs) of every kind of bad request, with a correct key unless
    the key is what is wrong."""
    key = {"X-API-Key": KEY}
    big = os.urandom(50 * 1024 * 1024)
    bomb, real_bomb = png_bomb_bytes(30000, 30000), png_bomb_real()
    boundary = "xYzZy"
    return [
        (
            "malformed multipart",
            {
                "content": b'--xYzZy\r\nContent-Disposition: form-data; name="files"\r\n\r\nab',
                "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}", **key},
            },
        ),
        (
            "multipart without boundary",
            {"content": b"garbage", "headers": {"Content-Type": "multipart/form-data", **key}},
        ),
        (
            "multipart, bad header line",
            {
                "content": f"--{boundary}\r\nnot a header\r\n\r\nx\r\n--{boundary}--\r\n".encode(),
                "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}", **key},
            },
        ),
        ("text/plain", {"content": b"hello", "headers": {"Content-Type": "text/plain", **key}}),
        (
            "application/json",
            {"content": b'{"image": 1}', "headers": {"Content-Type": "application/json", **key}},
        ),
        ("no content type", {"content": b"\x00\x01", "headers": {**key}}),
        (
            "truncated jpeg",
            {"content": good[: len(good) // 3], "headers": {"Content-Type": "image/jpeg", **key}},
        ),
        (
            "truncated jpeg multipart",
            {"files": [("files", ("t.jpg", good[: len(good) // 3], "image/jpeg"))], "headers": key},
        ),
        ("zero bytes", {"content": b"", "headers": {"Content-Type": "image/jpeg", **key}}),
        ("50 MB declared", {"content": big, "headers": {"Content-Type": "image/jpeg", **key}}),
        (
            "50 MB chunked",
            {"chunked": big, "headers": {"Content-Type": "image/jpeg", **key}},
        ),
        ("pixel bomb (header)", {"content": bomb, "headers": {"Content-Type": "image/png", **key}}),
        (
            "pixel bomb (real)",
            {"content": real_bomb, "headers": {"Content-Type": "image/png", **key}},
        ),
        ("missing API key", {"content": good, "headers": {"Content-Type": "image/jpeg"}}),
        (
            "wrong API key",
            {"content": good, "headers": {"Content-Type": "image/jpeg", "X-API-Key": "nope"}},
        ),
        (
            "top_k out of range",
            {
                "content": good,
                "params": {"top_k": 0},
                "headers": {"Content-Type": "image/jpeg", **key},
            },
        ),
    ]


async def _chunks(data: bytes, size: int = 1 << 20):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def bad_clients(url: str, kinds: list[tuple[str, dict]], total: int, clients: int) -> dict:
    results: list[tuple[str, int, bool]] = []  # (kind, status, JSON body with "error")
    counter = iter(range(total))

    async def one(client: httpx.AsyncClient) -> None:
        for i in counter:
            name, kwargs = kinds[i % len(kinds)]
            if "chunked" in kwargs:  # no Content-Length: the body streams in 1 MB pieces
                kwargs = {"content": _chunks(kwargs["chunked"]), "headers": kwargs["headers"]}
            try:
                response = await client.post("/v1/predict", **kwargs)
                try:
                    body_ok = "error" in response.json()
                except ValueError:
                    body_ok = False
                results.append((name, response.status_code, body_ok))
            except httpx.HTTPError as exc:
                results.append((f"{name} ({type(exc).__name__})", -1, False))

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(one(client) for _ in range(clients)))
    wrong = [
        f"{name}: {status}{'' if body_ok else ', no JSON error'}"
        for name, status, body_ok in results
        if not (400 <= status < 500 and body_ok)
    ]
    by_kind: dict[str, dict[int, int]] = {}
    for name, status, _ in results:
        by_kind.setdefault(name, {}).setdefault(status, 0)
        by_kind[name][status] += 1
    return {
        "sent": len(results),
        "not_4xx_json": len(wrong),
        "wrong": wrong[:10],
        "by_kind": by_kind,
    }


async def fault_run(server: Server, images: list[bytes], bad: int, clients: int) -> dict:
    kinds = bad_requests(images[0])
    stop = asyncio.Event()
    good_task = asyncio.create_task(
        good_clients(server.url, images, clients, 600, {"X-API-Key": KEY}, stop)
    )
    peak = server.rss()

    async def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.rss())
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    bad_result = await bad_clients(server.url, kinds, bad, clients)
    await asyncio.sleep(2)  # good traffic continues a little after the last bad request
    stop.set()
    good = await good_task
    await watcher
    return {"bad": bad_result, "good": good, "peak_rss_mb": peak}


def flat_png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (width, height), 1).save(buf, "PNG")
    return buf.getvalue()


def pixel_flood(server: Server, count: int = 16, size: tuple[int, int] = (8000, 5000)) -> dict:
    """One request of `count` flat PNGs: tiny on the wire, `count` x 40 MP when decoded."""
    png = flat_png(*size)
    files = [("files", (f"flat{i}.png", png, "image/png")) for i in range(count)]
    before, peak = server.rss(), server.rss()
    done: dict = {}

    async def send() -> None:
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=300) as client:
            try:
                response = await client.post(
                    f"{server.url}/v1/predict", files=files, headers={"X-API-Key": KEY}
                )
                done["status"], done["json"] = response.status_code, _is_json(response)
            except httpx.HTTPError as exc:
                done["status"], done["json"] = -1, repr(exc)[:100]
        done["seconds"] = time.perf_counter() - start

    async def watch() -> None:
        nonlocal peak
        task = asyncio.create_task(send())
        while not task.done():
            peak = max(peak, server.rss() if server.alive() else 0)
            await asyncio.sleep(0.05)

    asyncio.run(watch())
    time.sleep(5)
    return {
        "request_kb": round(sum(len(f[1][1]) for f in files) / 1024),
        "megapixels": count * size[0] * size[1] / 1e6,
        "status": done["status"],
        "json_error": done["json"],
        "seconds": round(done["seconds"], 2),
        "rss_mb_before": round(before, 1),
        "rss_mb_peak": round(peak, 1),
        "rss_mb_5s_after": round(server.rss(), 1) if server.alive() else None,
    }


def _is_json(response: httpx.Response) -> bool:
    try:
        return "error" in response.json() or "predictions" in response.json()
    except ValueError:
        return False


def _healthz(url: str, timeout: float = 5) -> tuple[int, float]:
    """(status or -1 on no answer, seconds) of GET /healthz on a fresh connection."""
    start = time.perf_counter()
    try:
        status = httpx.get(f"{url}/healthz", timeout=timeout).status_code
    except httpx.HTTPError:
        status = -1
    return status, round(time.perf_counter() - start, 2)


def idle_connections(server: Server, count: int = 3000, hold_s: float = 10) -> dict:
    """`count` connections that send nothing for `hold_s`: can /healthz still get in?"""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 256)), hard))
    log_before = server.log.stat().st_size
    sockets, refused = [], 0
    for _ in range(count):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        except OSError:
            refused += 1
    time.sleep(1)
    during = [_healthz(server.url) for _ in range(3)]
    time.sleep(max(0.0, hold_s - 1 - sum(s for _, s in during)))
    log_growth = server.log.stat().st_size - log_before
    for s in sockets:
        s.close()
    time.sleep(2)
    return {
        "connections": count,
        "connect_failed": refused,
        "healthz_during": during,
        "healthz_after": _healthz(server.url),
        "log_bytes_grew": log_growth,
        "alive": server.alive(),
    }


def log_arm(model: Path, images: list[bytes], tmp: Path, name: str, args) -> dict:
    """One server (with `--log` when `name` is "log"): 5 s warm-up, then the load."""
    db = tmp / f"{name}.db"
    extra = ("--log", str(db)) if name == "log" else ()
    server = Server(model, tmp / f"server-{name}.log", api_key=False, extra=extra)
    try:
        warm = asyncio.run(good_clients(server.url, images, args.clients, 5, {}))
        cpu = cpu_seconds(server.process.pid)
        load = asyncio.run(good_clients(server.url, images, args.clients, args.seconds, {}))
        cpu = cpu_seconds(server.process.pid) - cpu
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    finally:
        server.stop()  # SIGTERM: the server writes its queued rows before it exits
    result = {**load, "ok_total": warm["ok"] + load["ok"], "errors_total": warm["errors"]}
    result["cpu_ms_per_image"] = 1000 * cpu / max(1, load["ok"])
    result["errors_total"] += load["errors"]
    if name == "log":
        with sqlite3.connect(db) as conn:
            result["rows"] = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        dropped = [x for x in metrics.splitlines() if x.startswith("imgrec_log_dropped_total")]
        result["dropped"] = int(float(dropped[0].split()[-1])) if dropped else -1
    return result


def log_run(model: Path, images: list[bytes], tmp: Path, args) -> dict:
    before = log_arm(model, images, tmp, "before", args)
    logged = log_arm(model, images, tmp, "log", args)
    after = log_arm(model, images, tmp, "after", args)
    without = (before["img_per_s"] + after["img_per_s"]) / 2
    return {
        "benchmark": "serve-log",
        "clients": args.clients,
        "seconds_per_arm": args.seconds,
        "img_per_s_without_log": round(without, 1),
        "img_per_s_without_before_after": [
            round(before["img_per_s"], 1),
            round(after["img_per_s"], 1),
        ],
        "img_per_s_with_log": round(logged["img_per_s"], 1),
        "with_vs_without": round(logged["img_per_s"] / without, 3),
        "p95_ms_without_with": [
            round((before["p95_ms"] + after["p95_ms"]) / 2, 1),
            round(logged["p95_ms"], 1),
        ],
        # the server's own CPU time per answered image: what bounds throughput on a busy CPU,
        # and far less sensitive to other processes than the wall-clock rates
        "cpu_ms_per_image_without_with": [
            round((before["cpu_ms_per_image"] + after["cpu_ms_per_image"]) / 2, 1),
            round(logged["cpu_ms_per_image"], 1),
        ],
        "cpu_with_vs_without": round(
            logged["cpu_ms_per_image"]
            / ((before["cpu_ms_per_image"] + after["cpu_ms_per_image"]) / 2),
            3,
        ),
        "requests_ok_with_log": logged["ok_total"],
        "rows_in_log": logged["rows"],
        "rows_lost": logged["ok_total"] - logged["rows"],
        "rows_dropped_metric": logged["dropped"],
        "errors": before["errors_total"] + logged["errors_total"] + after["errors_total"],
        "failures": (before["failures"] + logged["failures"] + after["failures"])[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--fault", action="store_true", help="the fault run instead")
    parser.add_argument("--log", action="store_true", help="with vs without --log instead")
    parser.add_argument("--bad", type=int, default=200)
    args = parser.parse_args()
    model = ensure_model(args.model)
    images = photos(args.data)
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-serve-") as tmp:
        tmp = Path(tmp)
        if args.log:
            print(json.dumps(log_run(model, images, tmp, args)))
            return
        if not args.fault:
            earlier = cli_predict(model, args.data, tmp / "out.csv")["rate"]
        files = 1024 if args.fault else None  # the common default ulimit -n, as the attack had
        server = Server(model, tmp / "server.log", api_key=args.fault, max_files=files)
        try:
            headers = {"X-API-Key": KEY} if args.fault else {}
            warm = asyncio.run(good_clients(server.url, images, args.clients, 5, headers))
            if args.fault:  # the baseline: after good traffic shaped like the fault run's
                clients = args.clients // 2
                asyncio.run(good_clients(server.url, images, clients, 20, headers))
                time.sleep(5)
            baseline = server.rss()
            if args.fault:
                run = asyncio.run(fault_run(server, images, args.bad, args.clients // 2))
                time.sleep(5)
                after = server.rss()
                log = server.log.read_text(errors="replace")
                result = {
                    "benchmark": "serve-fault",
                    "bad_requests": run["bad"]["sent"],
                    "bad_not_4xx_json": run["bad"]["not_4xx_json"],
                    "bad_wrong_examples": run["bad"]["wrong"],
                    "bad_by_kind": run["bad"]["by_kind"],
                    "good_requests": run["good"]["requests"],
                    "good_not_200": run["good"]["errors"],
                    "good_failures": run["good"]["failures"],
                    "alive": server.alive(),
                    "tracebacks_in_log": log.count("Traceback"),
                    "rss_mb_baseline": round(baseline, 1),
                    "rss_mb_peak": round(run["peak_rss_mb"], 1),
                    "rss_mb_after": round(after, 1),
                    "rss_after_vs_baseline": round(after / baseline, 3),
                    "pixel_flood": pixel_flood(server),
                    "idle_connections": idle_connections(server),
                }
            else:
                load = asyncio.run(
                    good_clients(server.url, images, args.clients, args.seconds, headers)
                )
                after = server.rss()
                server.stop()  # predict gets the machine to itself, as the server had
                later = cli_predict(model, args.data, tmp / "out.csv")["rate"]
                predict_rate = (earlier + later) / 2  # before and after: drift cancels
                result = {
                    "benchmark": "serve",
                    "clients": args.clients,
                    "seconds": args.seconds,
                    "requests": load["requests"],
                    "errors": load["errors"],
                    "serve_img_per_s": round(load["img_per_s"], 1),
                    "p50_ms": round(load["p50_ms"], 1),
                    "p95_ms": round(load["p95_ms"], 1),
                    "p99_ms": round(load["p99_ms"], 1),
                    "predict_img_per_s": round(predict_rate, 1),
                    "predict_img_per_s_before_after": [round(earlier, 1), round(later, 1)],
                    "serve_vs_predict": round(load["img_per_s"] / predict_rate, 3),
                    "warmup_img_per_s": round(warm["img_per_s"], 1),
                    "rss_mb_after_warmup": round(baseline, 1),
                    "rss_mb_after_load": round(after, 1),
                    "failures": load["failures"],
                }
        finally:
            server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
