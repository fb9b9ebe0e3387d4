"""Settings of one server, gathered in one place so the CLI and tests build apps the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    """What `imgrec serve` can be told; the defaults suit a laptop behind nothing."""

    api_key: str | None = None  # when set, /v1/* needs header X-API-Key with this value
    max_upload_bytes: int = 20 * 1024 * 1024  # whole request body; larger -> 413
    max_files: int = 64  # per multipart request
    max_batch: int = 32  # images per forward pass when requests are batched together
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    default_top_k: int = 3
    engine: str = "auto"  # forward pass: onnx (ONNX Runtime), torch, or auto (onnx if installed)
    min_confidence: float = 0.0  # top-1 probability below this answers "unknown"; per request too
    log: Path | None = None  # SQLite prediction log (prediction_log/); off by default
    store_images: Path | None = None  # with `log`: metadata-free copies of the images here
    log_max_rows: int | None = None  # retention: keep at most this many rows
    log_max_days: float | None = None  # retention: delete rows older than this
    # Decoded pixels (at the scale a JPEG is drafted to) of one request's images, read from
    # their headers before decoding; also the most decoding at once across requests. 100 MP is
    # one camera's largest photo or a few hundred phone photos, and about 0.5 GB of memory.
    max_request_pixels: int = 100_000_000
    # The connection side (`imgrec serve` only): open connections beyond `max_connections` get
    # a JSON 503 and are closed at once, so idle clients cannot use up the file descriptors;
    # a connection that sends no complete request for `timeout_keep_alive_s` is closed.
    max_connections: int = 256
    timeout_keep_alive_s: float = 5.0
    backlog: int = 2048  # connections the kernel queues before the server accepts them
