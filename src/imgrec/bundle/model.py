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
    """The model in a model.imgrec file; raises ImgrecError (one sentence) when it cannot.

    The file may come from anyone: load_bundle has checked its metadata against the schema
    (bundle/metadata.py), and here the weights must be finite numbers and a scikit-learn
    estimator must pass models/estimator_check.py, so nothing crafted reaches the engines."""
    path = Path(path)
    state, metadata = load_bundle(path)
    missing = [key for key in _NEEDED if key not in metadata]
    if missing:
        raise ImgrecError(f"{path} lacks the model metadata '{missing[0]}'; re-train the model.")
    config = TrainConfig.from_dict(metadata["config"])  # the schema checked every setting
    spec = _spec_of(path, metadata["model"])
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
    classes = list(metadata["classes"])
    temperature = float(metadata.get("calibration", {}).get("temperature", 1.0))
    _check_finite(path, state)
    network = _network(path, spec, state, len(classes), config.dropout)
    return TrainedModel(network, spec, config, preprocessing, classes, temperature, metadata)


_NEEDED = ("classes", "model", "preprocessing", "config")


def _spec_of(path: Path, name: str) -> ModelSpec:
    try:
        return get_spec(name)
    except ImgrecError:
        raise ImgrecError(
            f"{path} holds a model of the kind '{name[:80]}', which this imgrec cannot build."
        ) from None


def _check_finite(path: Path, state: dict[str, torch.Tensor]) -> None:
    """NaN or infinite weights make every probability NaN: refuse them at load, not after a
    run of answers that look like predictions."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ImgrecError(
                f"{path} holds NaN or infinite values in its weights ({name[:80]!r}): "
                "a damaged file."
            )


def _network(
    path: Path, spec: ModelSpec, state: dict[str, torch.Tensor], n_classes: int, dropout: float
) -> torch.nn.Module:
    from imgrec.models.estimator_check import EstimatorRejected

    network = create_model(spec, n_classes, weights="none", drop_rate=dropout)
    try:
        network.load_state_dict(state)
    except EstimatorRejected as exc:
        raise ImgrecError(f"{path} cannot be loaded: its estimator {exc.reason}.") from None
    except RuntimeError as exc:
        raise ImgrecError(f"{path} does not match its model '{spec.name}': damaged file.") from exc
    return network.eval()


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
    """The versions that trained a model, written into its file for reproducibility.

    Read from the installed packages' metadata, not by importing them: a run that never
    fine-tuned has not loaded Lightning, and importing it only to ask took 0.7 s.
    """
    from importlib import metadata

    from imgrec.version import __version__

    def installed(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "imgrec": __version__,
        "torch": torch.__version__,
        "torchvision": installed("torchvision"),
        "timm": installed("timm"),
        "lightning": installed("lightning"),
        "python": platform.python_version(),
    }
