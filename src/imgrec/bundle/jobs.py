"""Model file -> batch job (infer/jobs.py): the ONNX graph a cluster job ships to its actors.

A job sends one graph to every worker through Ray's object store instead of the model file,
so workers need no shared filesystem, no torch and no copy of the file: only imgrec and
onnxruntime. Prediction runs the graph `imgrec predict` runs (softmax and calibration inside);
embeddings run the network's pooled features before the classifier.
"""

from __future__ import annotations

from pathlib import Path

from imgrec.bundle.predictor import open_predictor
from imgrec.errors import ImgrecError
from imgrec.infer.jobs import Job
from imgrec.infer.stages import EmbedHead, PredictHead


def prediction_job(
    path: Path, top_k: int = 1, min_confidence: float | None = None, batch_size: int = 32
) -> Job:
    """The job of `imgrec predict` for a model.imgrec or an exported .onnx file."""
    from imgrec.infer.engine import OnnxEngine

    predictor = open_predictor(path, "onnx", batch_size)
    if not isinstance(predictor.engine, OnnxEngine):  # scikit-learn inside: no ONNX graph
        raise ImgrecError(
            f"{path} is a scikit-learn model; it predicts in one process (--on local)."
        )
    head = PredictHead(predictor.classes, top_k, min_confidence)
    return Job(predictor.engine.graph_bytes(), head, predictor.preprocessing)


def embedding_job(path: Path) -> Job:
    """The job of `imgrec embed`: the network's pooled features (before its classifier)."""
    if path.suffix.lower() == ".onnx":
        raise ImgrecError(
            f"{path} is an exported ONNX file, which computes probabilities only; embed with "
            "its model.imgrec."
        )
    from imgrec.bundle.model import load_model
    from imgrec.models.anatomy import num_features
    from imgrec.models.classic import ClassicNetwork
    from imgrec.models.fast_features import FEATURES, feature_graph

    model = load_model(path)
    if isinstance(model.network, ClassicNetwork):
        raise ImgrecError(f"{path} is a scikit-learn model; it has no network to embed with.")
    try:
        graph = feature_graph(model.network, model.preprocessing.input_size)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ImgrecError(f"cannot export the features of {path} to ONNX ({first}).") from None
    head = EmbedHead(FEATURES, num_features(model.network))
    return Job(graph, head, model.preprocessing)
