"""Keep the server's log small when the same line repeats thousands of times a second.

Under attack (thousands of connections, each accept() failing with "too many open files") the
event loop logs the same error with its traceback on every attempt, and the log grew 130 MB in
10 s. `RepeatFilter` lets the first record of a kind through, then at most one summary per
`every_s` seconds ("... (repeated 5321 times in 10 s)"), without the traceback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# The loggers that can repeat one line per connection or per request: the event loop's
# (accept errors), uvicorn's own, and ours (unexpected exceptions, see middleware.py).
NOISY_LOGGERS = ("asyncio", "uvicorn.error", "imgrec.serve")
MAX_KINDS = 1000  # distinct kinds remembered; beyond it the memory starts afresh


@dataclass
class _Kind:
    first: float  # when the first record of this kind went out
    last_out: float  # when the last record or summary of this kind went out
    repeats: int = 0  # records held back since then


class RepeatFilter(logging.Filter):
    """Pass the first record of each kind; hold back repeats, summarising them every `every_s`.

    A kind is (logger, level, message template, exception type): uvicorn's and asyncio's
    messages are constant templates, so a flood of one failure is one kind. Thread-safe.
    """

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._kinds: dict[tuple, _Kind] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0] if record.exc_info else None
        key = (record.name, record.levelno, str(record.msg), exc_type)
        now = self.clock()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None:
                if len(self._kinds) >= MAX_KINDS:
                    self._kinds.clear()
                self._kinds[key] = _Kind(first=now, last_out=now)
                return True
            kind.repeats += 1
            if now - kind.last_out < self.every_s:
                return False
            repeats, kind.repeats, kind.last_out = kind.repeats, 0, now
        _summarise(record, repeats, now - kind.first)
        return True


def _summarise(record: logging.LogRecord, repeats: int, seconds: float) -> None:
    """Turn `record` into the one-line summary of its kind (no traceback: the first had it)."""
    record.msg = f"{record.getMessage()} (repeated {repeats} times in {seconds:.0f} s)"
    record.args = None
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None


def limit_repeated_lines(every_s: float = 10.0) -> None:
    """Put one RepeatFilter on each of NOISY_LOGGERS (once; call after uvicorn set up logging)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(every_s))
