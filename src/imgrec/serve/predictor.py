"""The loaded model, split into the two halves that serving schedules separately.

`prepare` (bytes -> tensor) runs in many threads, one per upload; `run` (batch ->
probabilities and drift signatures) runs on the batcher's single thread. Both
are the very functions `imgrec predict` uses, so the server's answers equal the CLI's: the
forward pass is the same engine (ONNX Runtime when installed, see infer/engine.py), here with
one pinned session per power-of-two batch size up to the largest micro-batch, so a lone
request runs a batch of 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from imgrec.bundle.model import load_model
from imgrec.data.preprocess import prepare_input
from imgrec.infer.engine import make_engine
from imgrec.infer.predict import Prediction, top_k_predictions
from imgrec.runtime import configure_cpu_runtime


class Predictor:
    """A model file loaded for serving (raises ImgrecError, one sentence, if it cannot be)."""

    def __init__(self, model_path: str | Path, engine: str = "auto", max_batch: int = 32) -> None:
        configure_cpu_runtime()  # torch threads = cores; batches use them all
        self.path = Path(model_path)
        self.model = load_model(self.path)
        self.network = self.model.network
        self.preprocessing = self.model.preprocessing
        sizes = [1 << i for i in range(max(1, max_batch).bit_length()) if 1 << i < max_batch]
        self.engine = make_engine(
            self.network,
            self.preprocessing.input_size,
            engine,
            [*sizes, max(1, max_batch)],
            temperature=self.model.temperature,
        )

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    def prepare(self, data: bytes) -> torch.Tensor:
        """Decode one upload into model input; raises UnreadableImage with a short reason."""
        return torch.from_numpy(prepare_input(data, self.preprocessing))

    def forward(self, batch: torch.Tensor) -> np.ndarray:
        return self.engine(batch)

    def run(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (N, C), signatures (N, SIGNATURE_DIMS) or None): the answer, and
        what the prediction log keeps for drift; the signature costs next to nothing."""
        return self.engine.run(batch)

    def top_k(self, filenames: list[str], probs: np.ndarray, k: int) -> list[Prediction]:
        return top_k_predictions(self.classes, filenames, probs, k)

    def describe(self) -> dict:
        """What GET /v1/model shows: enough to know which model answers and how it scored."""
        meta = self.model.metadata
        return {
            "name": f"{self.path.parent.name}/{self.path.name}".lstrip("/"),
            "backbone": meta.get("model"),
            "timm_name": meta.get("timm_name"),
            "classes": self.classes,
            "preprocessing": self.preprocessing.to_dict(),
            "metrics": _json_safe(meta.get("metrics", {})),
            "best_epoch": _json_safe(meta.get("best_epoch")),
            "created": meta.get("created"),
            "versions": meta.get("versions", {}),
            "engine": self.engine.name,
            "temperature": self.model.temperature,
        }


def _json_safe(value):
    """Metrics may hold NaN (an undefined AUC); JSON has no NaN, so it becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
