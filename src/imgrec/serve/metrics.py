"""Prometheus metrics in the text exposition format, written by hand.

Five series (seven with the prediction log) are all a dashboard needs here; the official
client library would add a dependency and a process-global registry for that. Updates happen
on the event loop; the lock only guards against a scrape reading a half-updated histogram from
another thread.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.total += 1
        self.sum += value

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = [
            f'{name}_bucket{{{labels}{sep}le="{_num(edge)}"}} {count}'
            for edge, count in zip(self.buckets, self.counts, strict=True)
        ]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {self.sum:.6f}", f"{name}_count{braces} {self.total}"]
        return out


class Metrics:
    """Request counts, latencies, errors, images and batch sizes since the server started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.errors: dict[str, int] = defaultdict(int)
        self.images = 0
        self.batch_size = _Histogram(BATCH_BUCKETS)
        # (rows written, rows dropped) of the prediction log, when the server keeps one
        self.log_counts: Callable[[], tuple[int, int]] | None = None

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS_S)).observe(seconds)
            if status >= 400:
                self.errors[endpoint] += 1

    def record_images(self, n: int) -> None:
        with self._lock:
            self.images += n

    def record_batch(self, n: int) -> None:
        with self._lock:
            self.batch_size.observe(n)

    def render(self) -> str:
        """The whole registry as Prometheus text (version 0.0.4)."""
        with self._lock:
            lines = [
                "# HELP imgrec_requests_total HTTP requests by endpoint and status code.",
                "# TYPE imgrec_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                labels = f'endpoint="{endpoint}",status="{status}"'
                lines.append(f"imgrec_requests_total{{{labels}}} {n}")
            lines += [
                "# HELP imgrec_request_duration_seconds Time from request to response.",
                "# TYPE imgrec_request_duration_seconds histogram",
            ]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("imgrec_request_duration_seconds", f'endpoint="{endpoint}"')
            lines += [
                "# HELP imgrec_errors_total Responses with a 4xx or 5xx status, by endpoint.",
                "# TYPE imgrec_errors_total counter",
            ]
            for endpoint, n in sorted(self.errors.items()):
                lines.append(f'imgrec_errors_total{{endpoint="{endpoint}"}} {n}')
            lines += [
                "# HELP imgrec_images_predicted_total Images classified.",
                "# TYPE imgrec_images_predicted_total counter",
                f"imgrec_images_predicted_total {self.images}",
                "# HELP imgrec_batch_size Images per forward pass (micro-batching at work).",
                "# TYPE imgrec_batch_size histogram",
                *self.batch_size.lines("imgrec_batch_size", ""),
            ]
        if self.log_counts is not None:
            written, dropped = self.log_counts()
            lines += [
                "# HELP imgrec_log_rows_total Predictions written to the prediction log.",
                "# TYPE imgrec_log_rows_total counter",
                f"imgrec_log_rows_total {written}",
                "# HELP imgrec_log_dropped_total Predictions the log could not keep (it fell "
                "behind, or a write failed).",
                "# TYPE imgrec_log_dropped_total counter",
                f"imgrec_log_dropped_total {dropped}",
            ]
        return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
