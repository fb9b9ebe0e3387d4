"""A trained model and its file: `load_model`, `save_model`, `update_metadata`.

This is the one place that turns model.imgrec into a network and back. Serving, export,
monitoring, the jobs and the Python API all load through here, so none of them needs the
front end (the Python API) and the metadata's layout is written down once.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from imgrec.bundle.format import load_bundle, save_bundle
from imgrec.config import TrainConfig
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.models.registry import ModelSpec, create_model, get_spec

if TYPE_CHECKING:
    from imgrec.infer.predict import BatchPredictor


@dataclass
class TrainedModel:
    """A network with everything needed to use it: classes, preprocessing, calibration."""

    network: torch.nn.Module
    spec: ModelSpec
    config: TrainConfig
    preprocessing: Preprocessing
    classes: list[str]
    temperature: float = 1.0  # probabilities are softmax(logits / temperature)
    metadata: dict = field(default_factory=dict)

    @property
    def history(self) -> list[dict]:
        return self.metadata.get("history", [])

    def predictor(
        self,
        engine: str = "auto",
        batch_size: int = 32,
        on_fallback: Callable[[str], None] | None = None,
        batch_sizes: list[int] | None = None,
    ) -> BatchPredictor:
        """A BatchPredictor over this network: `engine` "onnx" (ONNX Runtime, exported in
        memory, one session per size in `batch_sizes`, default [batch_size]), "torch", or
        "auto" (onnx when onnxruntime is installed, else torch, said to `on_fallback`)."""
        from imgrec.infer.engine import make_engine
        from imgrec.infer.predict import BatchPredictor
        from imgrec.runtime import configure_cpu_runtime

        configure_cpu_runtime()
        made = make_engine(
            self.network,
            self.preprocessing.input_size,
            engine,
            batch_sizes or [batch_size],
            on_fallback,
            self.temperature,
        )
        return BatchPredictor(
            self.classes, self.preprocessing, made, batch_size, source=self.spec.name
        )


def model_metadata(model: TrainedModel, metrics: dict | None = None) -> dict:
    """The metadata a model file carries: the model's own plus what rebuilds it."""
    meta = model.metadata
    return {
        **meta,
        "classes": list(model.classes),
        "model": model.spec.name,
        "timm_name": model.spec.timm_name,
        "preprocessing": model.preprocessing.to_dict(),
        "config": model.config.to_dict(),
        "metrics": metrics if metrics is not None else meta.get("metrics", {}),
        "history": model.history,
        "calibration": {**meta.get("calibration", {}), "temperature": model.temperature},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }


def save_model(path: str | Path, model: TrainedModel, metrics: dict | None = None) -> dict:
    """Write `model` as one safe file (atomically); returns the metadata written."""
    metadata = model_metadata(model, metrics)
    save_bundle(Path(path), model.network.state_dict(), metadata)
    return metadata


def load_model(path: str | Path) -> TrainedModel:
    """The model in a model.imgrec file; raises ImgrecError (one sentence) when it cannot."""
    path = Path(path)
    state, metadata = load_bundle(path)
    try:
        config = TrainConfig.from_dict(metadata["config"])  # tolerates old and unknown keys
        spec = get_spec(metadata["model"])
        preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
        classes = list(metadata["classes"])
        temperature = float(metadata.get("calibration", {}).get("temperature", 1.0))
        if not temperature > 0:
            raise ValueError(f"temperature {temperature} is not positive")
    except (KeyError, TypeError, ValueError) as exc:
        raise ImgrecError(f"{path} is missing model metadata ({exc}); re-train the model.") from exc
    network = create_model(spec, len(classes), weights="none", drop_rate=config.dropout)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ImgrecError(f"{path} does not match its model '{spec.name}': damaged file.") from exc
    network.eval()
    return TrainedModel(network, spec, config, preprocessing, classes, temperature, metadata)


def update_metadata(
    path: str | Path, change: Callable[[dict], None], out: str | Path | None = None
) -> Path:
    """Rewrite a model file with `change` applied to its metadata, weights untouched, to
    `out` (default: in place, atomically). Returns the path written."""
    path = Path(path)
    state, metadata = load_bundle(path)
    change(metadata)
    target = Path(out) if out is not None else path
    if target.is_dir():
        raise ImgrecError(f"{target} is a folder; give a file name such as model.imgrec.")
    try:
        save_bundle(target, state, metadata)
    except OSError as exc:
        raise ImgrecError(f"cannot write {target} ({exc.strerror or exc}).") from None
    return target


def library_versions() -> dict:
    """The versions that trained a model, written into its file for reproducibility."""
    import lightning
    import timm
    import torchvision

    from imgrec.version import __version__

    return {
        "imgrec": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
    }
