"""Inference engines: one function (N, 3, S, S) float32 images -> (N, C) probabilities.

`torch` runs the network eagerly (channels-last, inference mode). `onnx` exports the same
network (constant 'SAME' padding, softmax inside) to ONNX in memory and runs ONNX Runtime with
the batch axis pinned by a free-dimension override: with every shape known, ONNX Runtime plans
its blocked layouts ahead (see fast_features.py; ~2-3x eager PyTorch on this project's 2-core
CPU). A pinned session only takes its own batch size, so an engine holds one session per size
in `batch_sizes`, splits a batch into the largest sizes that fit and pads only below the
smallest: `imgrec predict` uses one size (the last batch is padded), the server 1, 2, 4, ...,
32, so a micro-batch of 13 runs as 8 + 4 + 1 and one image never pays for 32. No session takes
more than `images_per_run(threads)` images: on a CPU, a few images at a time run faster than
32 (see there).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imgrec.config import ENGINES
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.infer.graph_io import INPUT, OUTPUT, SIGNATURE

if TYPE_CHECKING:  # torch loads on first use: an ONNX Runtime engine never needs it
    import torch

log = logging.getLogger(__name__)


class Engine(Protocol):
    """`engine(images)` -> probabilities; `engine.run(images)` -> (probabilities, signatures),
    the signatures (N, SIGNATURE_DIMS) of models/signature.py, or None where the engine runs
    a graph without them (an exported ONNX file)."""

    name: str

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray: ...

    def run(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]: ...


def onnx_available() -> bool:
    """Whether onnxruntime can be imported (without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def finite(probabilities: np.ndarray) -> np.ndarray:
    """`probabilities`, or ImgrecError when any is NaN or infinite: a damaged or crafted model
    (NaN weights, a vanishing temperature) must not print "nan%" and exit 0."""
    if not np.isfinite(probabilities).all():
        raise ImgrecError(
            "the model produced probabilities that are not numbers (NaN or infinity): its "
            "file is damaged; re-train or re-export it."
        )
    return probabilities


class TorchEngine:
    """Eager PyTorch: the reference the ONNX engine is checked against."""

    name = "torch"

    def __init__(self, network: torch.nn.Module, temperature: float = 1.0) -> None:
        import torch

        from imgrec.models.signature import WithSignature

        self._torch = torch

        self.network = network.eval()
        self.temperature = temperature
        self._with_signature = WithSignature(self.network, temperature).eval()

    def _channels_last(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        torch = self._torch
        x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        return x.contiguous(memory_format=torch.channels_last)

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Softmax probabilities (n, C) of a normalised batch."""
        torch = self._torch
        with torch.inference_mode():
            logits = self.network(self._channels_last(images)).float()
            return finite(torch.softmax(logits / self.temperature, dim=1).numpy())

    def run(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            probs, signatures = self._with_signature(self._channels_last(images))
            return finite(probs.numpy()), signatures.numpy()


IMAGES_PER_THREAD = 2


def images_per_run(threads: int) -> int:
    """The most images one ONNX Runtime run takes with `threads` threads: two a thread.

    A run over 32 images holds 32 copies of every activation (the first layers' take 2 MB an
    image at 256 px), far beyond a core's cache, while two images a thread stay in it and
    still give each thread its own work. Measured on 2 cores (AMD EPYC), EfficientNet-Lite0
    at 256 px, 4,000 photos: `imgrec predict` (two threads) 190 img/s with runs of 32, 199
    with 16, 212 with 8, 221-232 with 4, 205 with 2; `--on ray` (one thread an actor)
    122-129 img/s with 32, 135-140 with 4, 147 with 2, 144-156 with 1. One thread alone,
    CPU a photo: 7.35 ms in runs of 32, 6.45 (8), 6.00 (4), 5.86 (2), 5.77 (1)."""
    return IMAGES_PER_THREAD * max(1, threads)


class OnnxEngine:
    """ONNX Runtime sessions of one model, each with its batch axis pinned to one size.

    `graph` holds the ONNX bytes when the engine was made from bytes (an exported network),
    so that open_predictor can keep them for the next run (infer/graph_cache.py)."""

    name = "onnx"

    def __init__(
        self,
        model: bytes | Path,
        batch_sizes: Sequence[int] = (32,),
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        from imgrec.runtime import cpu_threads, tune_malloc

        tune_malloc()
        threads = threads or cpu_threads()
        most = images_per_run(threads)
        self.batch_sizes = sorted({min(max(1, int(b)), most) for b in batch_sizes})
        source = str(model) if isinstance(model, Path) else model
        self.graph = model if isinstance(model, bytes) else None
        self._file = model if isinstance(model, Path) else None
        self._sessions = {}
        for size in self.batch_sizes:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = threads
            options.add_free_dimension_override_by_name("batch", size)
            # no busy-waiting between ops: the decode threads (predict) and the event loop
            # (serve) need those cycles; measured here, it also sped up the model itself
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # no memory-pattern plan: it reserves one block per batch for every activation
            # at once; without it, batch 32 took 461 instead of 749 MB for Lite0 (1071
            # instead of 1934 MB for the Lite0+1+2 ensemble) and ran 3-9% faster
            options.enable_mem_pattern = False
            self._sessions[size] = ort.InferenceSession(
                source, options, providers=["CPUExecutionProvider"]
            )

    @classmethod
    def from_network(
        cls,
        network: torch.nn.Module,
        input_size: int,
        batch_sizes: Sequence[int] = (32,),
        threads: int | None = None,
        temperature: float = 1.0,
    ) -> OnnxEngine:
        """Export `network` (+ softmax at `temperature`, + the drift signature) to ONNX in
        memory; raises ImgrecError if it cannot be."""
        return cls(network_graph(network, input_size, temperature), batch_sizes, threads)

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        return finite(self._run(images, [OUTPUT])[0])

    def run(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.has_signature:
            return self(images), None
        probs, signatures = self._run(images, [OUTPUT, SIGNATURE])
        return finite(probs), signatures

    def graph_bytes(self) -> bytes:
        """The ONNX graph this engine runs (read again when it was opened from a file): what a
        cluster job sends its workers."""
        return self.graph if self.graph is not None else Path(self._file).read_bytes()

    def outputs(self, images: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
        """The graph's outputs called `names` for a batch of any length (a feature graph's
        "features", say)."""
        return self._run(images, list(names))

    @property
    def has_signature(self) -> bool:
        first = next(iter(self._sessions.values()))
        return SIGNATURE in {o.name for o in first.get_outputs()}

    def _run(self, images: np.ndarray | torch.Tensor, names: list[str]) -> list[np.ndarray]:
        if not isinstance(images, np.ndarray):  # a torch tensor (the server's batches)
            images = images.detach().cpu().numpy()
        images = np.ascontiguousarray(images, dtype=np.float32)
        outputs: list[list[np.ndarray]] = []
        start = 0
        while start < len(images):
            # the largest session that the rest fills; padding only below the smallest one,
            # so with sizes 1, 2, 4, ... a batch of 13 runs as 8 + 4 + 1, never as 16
            remaining = len(images) - start
            fitting = [b for b in self.batch_sizes if b <= remaining]
            size = fitting[-1] if fitting else self.batch_sizes[0]
            chunk = images[start : start + size]
            n = len(chunk)
            if n < size:
                padded = np.zeros((size, *chunk.shape[1:]), dtype=np.float32)
                padded[:n] = chunk
                chunk = padded
            outputs.append([o[:n] for o in self._sessions[size].run(names, {INPUT: chunk})])
            start += n
        if not outputs:
            return [np.zeros((0, 0), dtype=np.float32) for _ in names]
        if len(outputs) == 1:
            return outputs[0]
        return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]


def network_graph(network: torch.nn.Module, input_size: int, temperature: float = 1.0) -> bytes:
    """The ONNX graph the ONNX engine runs for `network`: the network, softmax at
    `temperature` and the drift signature; raises ImgrecError if the network cannot be exported.

    timm's 'SAME' padding is traced as it is (shape arithmetic in front of a Pad). The engine
    pins the batch axis of every session, so ONNX Runtime folds that arithmetic into constants
    and fuses each Pad into its Conv. Constant padding written by models/static_pad.py (which
    the exported files keep, for int8) left 5 Pads unfused in EfficientNet-Lite0, each with a
    blocked-layout round trip around it: 113 against 183 img/s at 256 px, batch 16, 2 threads
    (benchmarks/RESULTS.md).
    """
    from imgrec.infer.onnx_graph import export_onnx_bytes

    was_training = network.training
    try:
        return export_onnx_bytes(network.eval(), input_size, temperature, signature=True)
    finally:
        network.train(was_training)


def make_engine(
    network: torch.nn.Module,
    input_size: int,
    engine: str = "auto",
    batch_sizes: Sequence[int] = (32,),
    on_fallback: Callable[[str], None] | None = None,
    temperature: float = 1.0,
) -> Engine:
    """The engine called `engine` for `network`: "onnx", "torch", or "auto" (ONNX Runtime when
    it is installed and the export works, else PyTorch with one line to `on_fallback`).
    Probabilities are softmax(logits / `temperature`), the model's calibration."""
    import torch

    from imgrec.models.classic import ClassicNetwork

    if engine not in ENGINES:
        raise ImgrecError(f"unknown engine '{engine}'; use one of: {', '.join(ENGINES)}.")
    warn = on_fallback or log.warning
    if isinstance(network, ClassicNetwork):  # scikit-learn inside: its own engine, no graph
        if engine == "onnx":
            raise ImgrecError(
                "this is a scikit-learn model; it predicts with scikit-learn (--engine auto)."
            )
        return TorchEngine(network, temperature)
    if engine == "torch":
        return TorchEngine(network, temperature)
    if engine == "auto" and torch.cuda.is_available():
        return TorchEngine(network, temperature)  # on a GPU PyTorch is the fast path
    if not onnx_available():
        if engine == "onnx":
            raise ImgrecError("--engine onnx needs onnxruntime: pip install onnxruntime.")
        warn("onnxruntime is not installed; predicting with PyTorch (slower).")
        return TorchEngine(network, temperature)
    try:
        return OnnxEngine.from_network(network, input_size, batch_sizes, temperature=temperature)
    except ImgrecError as exc:
        if engine == "onnx":
            raise
        warn(f"{exc} Predicting with PyTorch instead (slower).")
        return TorchEngine(network, temperature)


def read_onnx_file(
    path: Path, batch_sizes: Sequence[int] = (32,)
) -> tuple[list[str], Preprocessing, OnnxEngine]:
    """Classes, preprocessing and an engine for an ONNX file written by `imgrec export`."""
    if not onnx_available():
        raise ImgrecError(f"{path} is an ONNX model; reading it needs onnxruntime.")
    try:
        engine = OnnxEngine(Path(path).read_bytes(), batch_sizes)
    except OSError as exc:
        raise ImgrecError(f"cannot read {path} ({exc.strerror or exc}).") from exc
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImgrecError(f"{path} is not a usable ONNX model ({first[:200]}).") from exc
    first = next(iter(engine._sessions.values()))
    meta = first.get_modelmeta().custom_metadata_map
    try:
        classes = list(json.loads(meta["classes"]))
        preprocessing = Preprocessing.from_dict(json.loads(meta["preprocessing"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ImgrecError(
            f"{path} has no imgrec metadata (classes, preprocessing); export it with "
            "`imgrec export`."
        ) from exc
    return classes, preprocessing, engine
