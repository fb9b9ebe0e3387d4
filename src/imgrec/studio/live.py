"""The Try-it tab's model: the run's model file loaded once, answering one frame at a time.

It is `imgrec serve`'s Predictor (serve/predictor.py), so a frame is decoded, scored and
ranked exactly as `imgrec predict` and the REST server do it, on ONNX Runtime. Loading takes a
second or two, so the last few models stay loaded; a model file replaced on disk (a resumed
run finished again) is loaded afresh. The Predictor (and torch with it) is imported with the
first model, not with the server.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from imgrec.data.decode import UnreadableImage
from imgrec.studio.errors import StudioError

if TYPE_CHECKING:
    from imgrec.serve.predictor import Predictor

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
            from imgrec.serve.predictor import Predictor

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
        probs, _ = predictor.run(x.unsqueeze(0))
        (ranked,) = predictor.top_k(["frame"], probs, top_k)
        return {
            "predictions": [
                {"label": label, "confidence": confidence}
                for label, confidence in zip(ranked.classes, ranked.probabilities, strict=True)
            ],
            "engine": predictor.engine.name,
            "seconds": round(time.perf_counter() - started, 4),
        }
