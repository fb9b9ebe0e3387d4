"""Batch jobs over millions of images on a Ray cluster, through Ray Data.

    sources (index, path) --map_batches: DecodeStage, tasks--> uint8 crops (Arrow, zero-copy)
        --map_batches: GraphRunner, an actor pool of ONNX Runtime sessions--> rows
        --> the driver writes them into OutputParts as they arrive

Decoding runs as stateless tasks and inference in long-lived actors (each builds its session
once), so Ray scales the two apart: a slow bucket gets more decoding tasks, a big model more
actors. Each actor sizes ONNX Runtime's thread pool to the CPUs Ray gave it; by default
ONNX Runtime takes the whole host and N actors on one node would run N x cores threads.

Exactly once: every source carries its index. A task or actor lost with its node is run again
by Ray (tasks retry, actors restart, blocks are rebuilt from lineage), so a row may arrive
twice but never not at all; the driver keeps one bit per source and writes only the first
answer. An unreadable file is a row with an `error`, not a failed job. `--resume` leaves out
the sources the output's whole parts already hold (infer/parts.py). At the end every source
has exactly one row, or the job says how many are missing.

The per-batch work is infer/stages.py, the same code `run_local` runs in one process.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.infer.stages import Batch, DecodeStage, GraphRunner, Head, source_batches
from imgrec.runtime import tune_malloc
from imgrec.text import shown

RAY_INSTALL = "pip install 'imgrec[ray]'"
CONNECT_TIMEOUT = 5.0  # seconds to wait for the cluster's address to answer
ROWS_PER_BLOCK = 256  # sources per input block: a task's unit of work and of retry


@dataclass(frozen=True)
class RayOptions:
    """How a job uses the cluster. `address`: None starts a local cluster of this machine's
    CPUs (or joins the one RAY_ADDRESS names); "auto", "HOST:6379" or "ray://HOST:10001"
    join a running one. `actors`: the most inference actors (None: as many as fit)."""

    address: str | None = None
    batch_size: int = 32
    actors: int | None = None
    # Actors of 0.75 CPU (one ONNX Runtime thread each) and decoding tasks of 0.25 fit
    # together on a node of one CPU, so no stage waits for a bigger node. On 2 cores (3,000
    # to 4,000 photos) every split measured within 7%: 0.75 + 0.25 at 117-123 img/s, 1 + 0.5
    # at 115, one actor of 1.5 CPUs (two threads) at 113; decoding in actors instead of
    # tasks changed nothing (116).
    cpus_per_actor: float = 0.75
    decode_cpus: float = 0.25
    progress: bool = False


def ray_module() -> Any:
    """The ray package, or one sentence saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the job needs Ray Data, part of 'ray[data]'
    except ImportError:
        raise ImgrecError(f"--on ray needs Ray: {RAY_INSTALL}.") from None
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (or start a local one); True when this call started or
    joined it (and so should shut it down). ImgrecError when it cannot be reached."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "configure_logging": True,
    }
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        _check_reachable(target)
    # Ray's C++ core logs at ERROR that actors restarted after a node loss would need their
    # constructor arguments: the driver owns them (the graph), so they live as long as the job
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        ray.init(address=target, **options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = shown(target or "this machine")
        if _needs_token(exc):
            raise ImgrecError(
                f"the Ray cluster at {where} wants its authentication token: set "
                "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) as on its nodes."
            ) from None
        raise ImgrecError(
            f"cannot reach the Ray cluster at {where} ({_first_line(exc)}); start it with "
            "`ray start --head` there, or check --address."
        ) from None
    _quiet_ray_data(ray)
    return True


def _needs_token(exc: BaseException) -> bool:
    """Whether connecting failed on Ray's token authentication."""
    while exc is not None:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _check_reachable(address: str) -> None:
    """One sentence within seconds when nothing listens at `address` (HOST:PORT or
    ray://HOST:PORT): ray.init itself retries an unreachable cluster for minutes."""
    if address == "auto" or address.startswith(("local", "anyscale://")):
        return  # Ray finds these itself (and says so quickly when it cannot)
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ImgrecError(f"--address {shown(address)} is not HOST:PORT, ray://HOST:PORT or auto.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ImgrecError(
            f"cannot reach the Ray cluster at {shown(address)} ({exc.strerror or exc}); start "
            "it with `ray start --head` there, or check --address."
        ) from None


def _quiet_ray_data(ray: Any) -> None:
    """imgrec shows its own progress; Ray Data's bars and INFO lines would bury it."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors reach ray_errors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return shown(text.splitlines()[0], 200)


class _RayRunner:
    """GraphRunner inside a Ray actor: the graph comes from the object store (sent once, not
    once per actor), and its threads are the CPUs Ray assigned to this actor."""

    def __init__(
        self, graph_ref: Any, head: Head, preprocessing: Preprocessing, batch_size: int
    ) -> None:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        graph = ray.get(graph_ref[0])
        threads = max(1, round(cpus))
        self.runner = GraphRunner(graph, head, preprocessing, batch_size, threads)

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.runner(_from_arrow(table, self.runner.preprocessing.input_size))


def _decode_to_arrow(batch: Batch, decode: DecodeStage) -> pa.Table:
    """Decode a batch and hand it to Ray Data as Arrow columns, the crops as one fixed-size
    binary value per image over the same memory: nothing is copied or serialised on the way
    into the object store, and nothing taken out of it can run code when loaded. (Measured on
    2 cores, 4,000 photos, a running cluster, two runs each: the whole job used 81.6 and 85.1
    CPU-seconds against 87.1 and 88.5 with each batch moved as one .npz value; Arrow's own
    fixed-shape tensor column took 3% more than these binary values, 110-111 against 107-108.)

    The worker keeps freed memory in its heap as an engine's process does (it has no engine
    to set that): glibc otherwise hands each batch's pages back and faults them in again."""
    tune_malloc()
    decoded = decode(batch)
    pixels = np.ascontiguousarray(decoded.pop("pixels"))
    crop = pa.binary(int(np.prod(pixels.shape[1:])))  # one value of S x S x 3 bytes
    columns: dict[str, pa.Array] = {
        "index": pa.array(decoded.pop("index"), pa.int64()),
        "pixels": pa.FixedSizeBinaryArray.from_buffers(
            crop, len(pixels), [None, pa.py_buffer(pixels)]
        ),
    }
    for name, values in decoded.items():  # path, error, facts: text
        columns[name] = pa.array([str(v) for v in values], pa.string())
    return pa.table(columns)


def _from_arrow(table: pa.Table, side: int) -> Batch:
    """The decoding stage's Arrow columns as the numpy batch GraphRunner takes; the crops
    are a view of the Arrow buffer, not a copy."""
    pixels = table.column("pixels").combine_chunks()
    width = pixels.type.byte_width
    start = pixels.offset * width
    flat = np.frombuffer(pixels.buffers()[1], np.uint8)[start : start + len(pixels) * width]
    batch: Batch = {"pixels": flat.reshape(len(pixels), side, side, 3)}
    for name in table.column_names:
        if name != "pixels":
            batch[name] = table.column(name).to_numpy(zero_copy_only=False)
    return batch


def run_on_ray(
    sources: Sequence[str],
    graph: bytes,
    head: Head,
    decode: DecodeStage,
    options: RayOptions,
) -> Iterator[pa.Table]:
    """Run the job; yield tables of rows (with their `index`) as the cluster finishes them,
    each source's first answer only. Ray's errors become one sentence (ImgrecError)."""
    ray = ray_module()
    blocks = [
        pa.table({"index": b["index"], "path": pa.array(b["path"], pa.string())})
        for b in source_batches(sources, ROWS_PER_BLOCK)
    ]
    if not blocks:
        return
    data = ray.data.from_arrow(blocks)
    batch = max(1, options.batch_size)
    decoded = data.map_batches(
        _decode_to_arrow,
        fn_kwargs={"decode": decode},
        batch_size=batch,
        batch_format="numpy",
        num_cpus=options.decode_cpus,
    )
    rows = decoded.map_batches(
        _RayRunner,
        fn_constructor_args=([ray.put(graph)], head, decode.preprocessing, batch),
        batch_size=batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=options.actors),
        num_cpus=options.cpus_per_actor,
    )  # Ray Data restarts an actor lost with its node (max_restarts=-1) and retries its work
    seen = np.zeros(len(sources), dtype=bool)
    with ray_errors():
        for table in rows.iter_batches(batch_format="pyarrow", batch_size=None):
            index = table.column("index").to_numpy()
            fresh = _first_answers(index, seen)
            yield table if fresh.all() else table.filter(pa.array(fresh))
    missing = int((~seen).sum())
    if missing:
        raise ImgrecError(f"the cluster returned no row for {missing} input(s); add --resume.")


def _first_answers(index: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Which rows answer a source for the first time (also within the batch); marks them."""
    _, first = np.unique(index, return_index=True)
    fresh = np.zeros(len(index), dtype=bool)
    fresh[first] = True
    fresh &= ~seen[index]
    seen[index[fresh]] = True
    return fresh


class ray_errors:
    """Context manager: an error inside a Ray task or actor becomes one sentence; an
    ImgrecError raised there (no credentials, say) keeps its own."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, ImgrecError | KeyboardInterrupt | GeneratorExit):
            return False
        import ray.exceptions

        if not isinstance(exc, ray.exceptions.RayError):
            return False
        cause = _cause(exc)
        if isinstance(cause, ImgrecError):
            raise ImgrecError(str(cause)) from None
        if _in_actor_start(exc):
            raise ImgrecError(
                f"a Ray worker could not start the model ({_last_line(exc)}); check that "
                f"imgrec and onnxruntime are installed on every node ({RAY_INSTALL})."
            ) from None
        raise ImgrecError(f"the Ray job failed: {_first_line(cause)}") from None


def _cause(exc: BaseException) -> BaseException:
    """The error a Ray exception carries (its `cause`, through nesting), or itself."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def _last_line(exc: BaseException) -> str:
    """The error at the end of the traceback an ActorDiedError carries as text, without its
    module path ("InvalidProtobuf: ... parsing failed.")."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    last = next((line for line in reversed(lines) if line), type(exc).__name__)
    name, colon, message = last.partition(": ")
    if colon and re.fullmatch(r"[\w.]+", name):
        last = f"{name.rsplit('.', 1)[-1]}: {message}"
    return shown(last, 200)


def _in_actor_start(exc: BaseException) -> bool:
    text = str(exc)
    return "__init__" in text or "creation task" in text
