"""The classifier + softmax as ONNX bytes: shared by `imgrec export` and the ONNX engine.

It lives with the models (not in imgrec.export) so that `imgrec predict` and `imgrec serve`
can build an ONNX Runtime session in memory without loading the export and parity machinery.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from imgrec.errors import ImgrecError
from imgrec.infer.graph_io import INPUT, OUTPUT, SIGNATURE

OPSET = 18  # >= 17 as the export issue asks; the opset fast_features.py already exports with


class WithSoftmax(nn.Module):
    """The classifier plus softmax, so exported files output probabilities like `predict`;
    logits are divided by the model's calibration `temperature` first."""

    def __init__(self, model: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images).float() / self.temperature, dim=1)


def export_onnx_bytes(
    model: nn.Module, input_size: int, temperature: float = 1.0, signature: bool = False
) -> bytes:
    """Trace `model` + softmax with the legacy (TorchScript-based) exporter into ONNX bytes.

    The batch axis is dynamic and named "batch", so a session can pin it with a free-dimension
    override (see infer/engine.py). With `signature`, the graph has a second output, the
    drift signature of models/signature.py (the engines log it; exported files leave it out).
    """
    if signature:
        from imgrec.models.signature import WithSignature

        wrapped: nn.Module = WithSignature(model, temperature).eval()
        outputs = [OUTPUT, SIGNATURE]
    else:
        wrapped = WithSoftmax(model, temperature).eval()
        outputs = [OUTPUT]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                (torch.zeros(1, 3, input_size, input_size),),
                buffer,
                input_names=[INPUT],
                output_names=outputs,
                opset_version=OPSET,
                dynamic_axes={INPUT: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
                dynamo=False,
            )
    except Exception as exc:  # noqa: BLE001 - any tracing failure is one sentence for the user
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImgrecError(f"this model could not be exported to ONNX ({first}).") from exc
    return buffer.getvalue()
