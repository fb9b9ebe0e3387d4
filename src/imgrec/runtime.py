"""Process-level settings that change CPU speed several-fold, plus device helpers.

On small glibc machines PyTorch spends as much time in the kernel as in user code, because
glibc returns every large activation buffer to the OS (munmap) and maps it again on the
next batch. Keeping freed memory in the heap removes that churn (see MEASURED.md).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads on first use: ONNX Runtime prediction never needs it
    import torch

# glibc <malloc.h> parameter numbers and the values we set.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_MALLOPT = {
    "M_MMAP_MAX": (_M_MMAP_MAX, 0, "MALLOC_MMAP_MAX_"),  # never serve malloc from fresh mmaps
    "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, 2**31 - 1, "MALLOC_TRIM_THRESHOLD_"),  # keep free heap
}

_configured: dict | None = None


def _tune_glibc_malloc() -> dict[str, int]:
    """Apply mallopt for later allocations; skip values the user set via MALLOC_* env vars."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return {}
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = {}
    for name, (param, value, env) in _MALLOPT.items():
        if env not in os.environ and mallopt(param, value) == 1:
            applied[name] = value
    return applied


def release_free_memory() -> bool:
    """Hand freed heap memory back to the OS now (glibc malloc_trim); False where unsupported.

    configure_cpu_runtime keeps freed memory in the heap for speed, so a long-lived process
    (the server) calls this after work that allocated a lot once, such as a large upload.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_threads() -> int:
    """Threads for CPU inference: OMP_NUM_THREADS when the user set it, else this process's
    CPUs. ONNX Runtime sessions use it without importing torch."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return usable_cpus()


_malloc_tuned: dict[str, int] | None = None


def tune_malloc() -> dict[str, int]:
    """Keep freed memory in the heap (see the module docstring), once per process."""
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = _tune_glibc_malloc()
    return dict(_malloc_tuned)


def configure_cpu_runtime() -> dict:
    """Make CPU torch fast here; safe to call repeatedly. Returns what was set."""
    import torch

    global _configured
    if _configured is None:
        settings: dict = {"mallopt": tune_malloc()}
        if "OMP_NUM_THREADS" in os.environ:
            settings["num_threads_from"] = "OMP_NUM_THREADS"
        else:
            torch.set_num_threads(usable_cpus())
            settings["num_threads_from"] = "cpu_count"
        settings["num_threads"] = torch.get_num_threads()
        _configured = settings
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in _configured.items()}


def device() -> torch.device:
    """The device to train and predict on: the GPU when there is one."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device | str, cpu_bf16: bool = False) -> torch.dtype | None:
    """Mixed-precision dtype for `device`: bf16 where the GPU has it, else fp16. On a CPU,
    bf16 only when asked for and the CPU computes it natively (AVX-512 BF16 or AMX: oneDNN
    reports it); elsewhere it is emulated and slower than float32, so None."""
    import torch

    if torch.device(device).type != "cuda":
        return torch.bfloat16 if cpu_bf16 and _cpu_has_bf16() else None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _cpu_has_bf16() -> bool:
    import torch

    try:
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def peak_rss_mb() -> float:
    """Peak resident memory in MiB of this process or its largest child (workers)."""
    try:
        import resource
    except ImportError:  # Windows: no getrusage; psutil reports the peak working set
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch threads, then restore the count.

    Small tensors (a head on a few thousand cached vectors) gain nothing from more threads and
    lose badly when the cores are busy: an MLP step measured 18 ms on one thread and 410 ms on
    two while another process kept both cores loaded (OpenMP threads wait on each other).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
