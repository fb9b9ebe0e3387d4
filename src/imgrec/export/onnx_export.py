"""fp32 ONNX export: softmax inside the graph, a dynamic batch axis, preprocessing in metadata.

A deployed ONNX file must be usable without imgrec installed, so everything a client needs to
feed it (input size, resize size, mean, std) and to read its output (class names) is written
into the model's metadata_props as JSON strings; onnxruntime exposes them through
`session.get_modelmeta().custom_metadata_map`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imgrec.data.preprocess import Preprocessing
from imgrec.infer.onnx_graph import INPUT, OPSET, OUTPUT, WithSoftmax, export_onnx_bytes

__all__ = ["INPUT", "OPSET", "OUTPUT", "WithSoftmax", "export_onnx_bytes", "onnx_metadata"]


def onnx_metadata(
    classes: list[str], preprocessing: Preprocessing, source: dict, quantization: str
) -> dict[str, str]:
    """The metadata_props written into every exported ONNX file (all values are strings)."""
    from imgrec.version import __version__

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
