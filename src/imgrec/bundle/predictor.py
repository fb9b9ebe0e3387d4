"""`open_predictor`: a model file -> a BatchPredictor, as fast as the file allows.

A network's ONNX graph, once exported, is kept (infer/graph_cache.py); opening the same file
again with the ONNX engine then reads only the file's metadata and the kept graph, so torch is
never imported and one-image `imgrec predict` starts in about a second instead of five. The
first run, the torch engine, scikit-learn models and GPUs take the full path through
bundle/model.load_model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from imgrec.bundle.format import check_model_path, read_metadata
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.infer.engine import onnx_available
from imgrec.infer.graph_cache import cached_graph, forget_graph, keep_graph
from imgrec.models.families import get_family

if TYPE_CHECKING:
    from imgrec.bundle.model import TrainedModel
    from imgrec.infer.predict import BatchPredictor

# A machine with an NVIDIA driver may have a GPU, where "auto" means PyTorch on it: there the
# full path decides (torch.cuda.is_available() needs torch, the very import this module saves).
_NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def open_predictor(
    path: str | Path,
    engine: str = "auto",
    batch_size: int = 32,
    on_fallback: Callable[[str], None] | None = None,
) -> BatchPredictor:
    """A predictor of a model.imgrec with the chosen engine, or of an ONNX file written by
    `imgrec export` (always ONNX Runtime)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _exported_file(path, engine, batch_size)
    kept = _from_kept_graph(path, engine, batch_size)
    if kept is not None:
        return kept
    from imgrec.bundle.model import load_model

    predictor = load_model(path).predictor(engine, batch_size, on_fallback)
    graph = getattr(predictor.engine, "graph", None)
    if graph is not None:
        keep_graph(path, graph)
    return predictor


def keep_graph_for(path: Path, model: TrainedModel, graph: bytes | None = None) -> bool:
    """Keep the ONNX graph of the model just written to `path` (`graph` when the caller has
    it already, else a new export), so that even the first `imgrec predict` of a new model
    starts fast; False where there is none to keep (a scikit-learn model, no onnxruntime, a
    network that does not export)."""
    if not get_family(model.spec.name).traits.exportable or not onnx_available():
        return False
    if _may_have_gpu():  # the network may sit on the GPU; the graph is made on first predict
        return False
    if graph is None:
        from imgrec.infer.engine import network_graph

        try:
            graph = network_graph(model.network, model.preprocessing.input_size, model.temperature)
        except ImgrecError:
            return False
    return keep_graph(Path(path), graph) is not None


def _exported_file(path: Path, engine: str, batch_size: int) -> BatchPredictor:
    from imgrec.infer.engine import read_onnx_file
    from imgrec.infer.predict import BatchPredictor

    if engine == "torch":
        raise ImgrecError(f"{path} is an ONNX file; --engine torch needs a .imgrec model.")
    check_model_path(path)
    classes, preprocessing, onnx_engine = read_onnx_file(path, (batch_size,))
    return BatchPredictor(classes, preprocessing, onnx_engine, batch_size, source=str(path))


def _from_kept_graph(path: Path, engine: str, batch_size: int) -> BatchPredictor | None:
    """The predictor over the kept graph of `path`, or None where the full path must decide."""
    if engine not in ("auto", "onnx") or not onnx_available() or not path.is_file():
        return None
    if engine == "auto" and _may_have_gpu():
        return None
    graph = cached_graph(path)
    if graph is None:
        return None
    metadata = read_metadata(path)
    try:
        model = str(metadata["model"])
        preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
        classes = [str(c) for c in metadata["classes"]]
    except (KeyError, TypeError, ValueError, ImgrecError):
        return None  # load_model says what is wrong with the file
    if not get_family(model).traits.exportable:
        return None
    from imgrec.infer.engine import OnnxEngine
    from imgrec.infer.predict import BatchPredictor

    try:
        onnx_engine = OnnxEngine(graph, (batch_size,))
    except Exception:  # noqa: BLE001 - a damaged graph: export it again on the full path
        forget_graph(graph)
        return None
    return BatchPredictor(classes, preprocessing, onnx_engine, batch_size, source=model)


def _may_have_gpu() -> bool:
    return _NVIDIA_DRIVER.exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))
