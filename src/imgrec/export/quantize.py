"""int8 ONNX: onnxruntime static quantisation (QDQ, per-channel weights) from real images.

Static quantisation fixes activation ranges from calibration images once, so inference runs
integer kernels end to end (VNNI on recent x86) instead of quantising activations per batch.
The final Softmax stays in float: its output is the probability a user reads, and 8 bits of
probability would turn 0.996 into 1.0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from imgrec.export.onnx_export import INPUT

# Every op between convolutions is quantised too (Clip = ReLU6, Pad, pooling): each op left in
# float costs a Dequantize/Quantize pair per image. On EfficientNet-Lite0, Conv+Gemm alone
# leaves 34 Q/DQ pairs after ONNX Runtime's fusions, this list 6 (single runs on a loaded 2-core
# VM: 1.25x vs 1.33x fp32 speed). S8 activations and quant_pre_process measured slower there.
QUANTIZED_OPS = [
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Pad",
    "Clip",
    "Relu",
    "GlobalAveragePool",
    "Flatten",
]


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed images, a few at a time."""

    def __init__(self, images: torch.Tensor, batch: int = 8):
        self._chunks = iter([x.contiguous().numpy() for x in images.split(batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._chunks, None)
        return None if chunk is None else {INPUT: chunk}


def quantize_int8(fp32_path: Path, out_path: Path, images: torch.Tensor) -> None:
    """Write an int8 QDQ model of `fp32_path` to `out_path`, calibrated on `images`.

    The fp32 graph must already have constant padding (static_pad.py); quant_pre_process is
    not run: on this graph it made the int8 model slower, not faster.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT's quantiser warns on the root logger about pre-processing
    try:
        _quantize(fp32_path, out_path, images)
    finally:
        root.setLevel(level)


def _quantize(fp32_path: Path, out_path: Path, images: torch.Tensor) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(fp32_path),
        str(out_path),
        _Reader(images),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,  # U8S8: the VNNI fast path of ONNX Runtime's MLAS
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=QUANTIZED_OPS,
    )
