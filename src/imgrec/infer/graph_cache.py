"""ONNX graphs of model files, kept on disk so that the next `imgrec predict` starts at once.

Predicting with ONNX Runtime first exports the network to ONNX, which needs torch (2-3 s to
import here) and the export itself (about 1 s). The graph depends only on the model file's
bytes (weights, architecture, calibration temperature) and on how imgrec builds graphs, so it
is kept under the SHA-256 of the file and GRAPH_VERSION; the next run with the same file
needs neither torch nor the export. Any change to the file (`imgrec calibrate`, retraining)
changes the key. The newest KEEP graphs stay; older ones are deleted when a new one is kept.

The folder is the user's own cache (IMGREC_CACHE_DIR, else ~/.cache/imgrec), written with the
user's permissions; a graph that fails to load is deleted and exported again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from imgrec.data.embedding_store import default_cache_dir, file_sha256
from imgrec.infer.graph_io import GRAPH_VERSION
from imgrec.version import __version__

KEEP = 16  # graphs kept; a 224-pixel EfficientNet-Lite0 graph is about 14 MB


def graph_folder() -> Path:
    return default_cache_dir() / "onnx"


def graph_path(model_file: Path) -> Path | None:
    """Where the graph of `model_file` is kept (whether or not it is there yet); None when the
    file cannot be read."""
    try:
        digest = file_sha256(model_file)
    except OSError:
        return None
    return graph_folder() / f"{digest}-g{GRAPH_VERSION}-{__version__}.onnx"


def cached_graph(model_file: Path) -> Path | None:
    """The kept graph of `model_file`, or None; a hit counts as a use for KEEP."""
    path = graph_path(model_file)
    if path is None or not path.is_file():
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return path


def keep_graph(model_file: Path, graph: bytes) -> Path | None:
    """Write `graph` for `model_file` atomically, then drop all but the newest KEEP graphs.
    A cache that cannot be written (read-only home, full disk) is not an error: None."""
    path = graph_path(model_file)
    if path is None:
        return None
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(graph)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return None
    _prune(path.parent)
    return path


def forget_graph(path: Path) -> None:
    """Delete a kept graph that did not load (damaged, or from an incompatible runtime)."""
    with contextlib.suppress(OSError):
        path.unlink()


def _prune(folder: Path) -> None:
    graphs = []
    for entry in folder.glob("*.onnx"):
        with contextlib.suppress(OSError):
            graphs.append((entry.stat().st_mtime, entry))
    for _, old in sorted(graphs, reverse=True)[KEEP:]:
        forget_graph(old)
