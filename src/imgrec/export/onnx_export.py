"""fp32 ONNX export: softmax inside the graph, a dynamic batch axis, preprocessing in metadata.

A deployed ONNX file must be usable without imgrec installed, so everything a client needs to
feed it (input size, resize size, mean, std) and to read its output (class names) is written
into the model's metadata_props as JSON strings; onnxruntime exposes them through
`session.get_modelmeta().custom_metadata_map`.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgrec.data.transforms import Preprocessing
from imgrec.errors import ImgrecError

OPSET = 18  # >= 17 as the issue asks; the opset fast_features.py already exports with
INPUT, OUTPUT = "images", "probabilities"


class WithSoftmax(nn.Module):
    """The classifier plus softmax, so exported files output probabilities like `predict`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images).float(), dim=1)


def onnx_metadata(
    classes: list[str], preprocessing: Preprocessing, source: dict, quantization: str
) -> dict[str, str]:
    """The metadata_props written into every exported ONNX file (all values are strings)."""
    from imgrec import __version__

    return {
        "classes": json.dumps(classes),
        "preprocessing": json.dumps(preprocessing.to_dict()),
        "input": json.dumps(
            {
                "name": INPUT,
                "layout": "NCHW",
                "colour": "RGB",
                "dtype": "float32",
                "scale": "pixel / 255, then (x - mean) / std",
            }
        ),
        "output": json.dumps({"name": OUTPUT, "meaning": "softmax probabilities per class"}),
        "model": json.dumps(source.get("model")),
        "data_fingerprint": json.dumps(source.get("data", {}).get("fingerprint")),
        "quantization": json.dumps(quantization),
        "imgrec_version": json.dumps(__version__),
    }


def export_onnx_bytes(model: nn.Module, input_size: int) -> bytes:
    """Trace `model` + softmax with the legacy (TorchScript-based) exporter into ONNX bytes."""
    wrapped = WithSoftmax(model).eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                (torch.zeros(1, 3, input_size, input_size),),
                buffer,
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=OPSET,
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                dynamo=False,
            )
    except Exception as exc:  # noqa: BLE001 - any tracing failure is one sentence for the user
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImgrecError(f"this model could not be exported to ONNX ({first}).") from exc
    return buffer.getvalue()


def save_with_metadata(onnx_bytes: bytes, path: Path, metadata: dict[str, str]) -> None:
    """Write an ONNX model to `path` with `metadata` replacing any metadata_props it had."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "imgrec"
    path.write_bytes(proto.SerializeToString())


def onnx_session(path_or_bytes: Path | bytes, threads: int | None = None):
    """A CPU onnxruntime session; `threads` pins intra-op threads (benchmarks use 2)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def session_runner(session):
    """A function (N,3,S,S) float32 array -> (N,C) probabilities."""

    def run(images: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: images.astype(np.float32, copy=False)})[0]

    return run
