"""The Try-it tab's model: the run's model file loaded once, answering one frame at a time.

It is `imgrec serve`'s Predictor (serve/predictor.py), so a frame is decoded and scored
exactly as `imgrec predict` and the REST server do it, on ONNX Runtime. Loading takes a
second or two, so the last few models stay loaded; a model file replaced on disk (a resumed
run finished again) is loaded afresh.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch

from imgrec.data.decode import UnreadableImage
from imgrec.serve.predictor import Predictor
from imgrec.studio.errors import StudioError

KEEP_LOADED = 2  # models; one per open Try-it tab is the usual case


class LiveModels:
    """Loaded models by file, least recently used dropped first."""

    def __init__(self, keep: int = KEEP_LOADED) -> None:
        self.keep = keep
        self._loaded: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_file: Path) -> Predictor:
        if not model_file.is_file():
            raise StudioError(
                "this run has no model file yet: wait for training to finish, or train again.",
                404,
            )
        key = (str(model_file), model_file.stat().st_mtime_ns)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            predictor = Predictor(model_file, engine="auto", max_batch=1)
            self._loaded[key] = predictor
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
            return predictor

    def predict(self, model_file: Path, data: bytes, top_k: int = 5) -> dict:
        """Top-k labels for one image, with the seconds the server spent on it."""
        started = time.perf_counter()
        predictor = self.get(model_file)
        try:
            x = predictor.prepare(data)
        except UnreadableImage as exc:
            raise StudioError(f"this is not an image imgrec can read: {exc}", 422) from None
        probs, _ = predictor.run(torch.unsqueeze(x, 0))
        ranked = probs[0].argsort()[::-1][:top_k]
        return {
            "predictions": [
                {"label": predictor.classes[i], "confidence": float(probs[0][i])} for i in ranked
            ],
            "engine": predictor.engine.name,
            "seconds": round(time.perf_counter() - started, 4),
        }
