"""TorchScript export: a traced model + softmax that `torch.jit.load` runs without imgrec.

The same metadata as the ONNX export travels inside the archive as `_extra_files`
(`metadata.json`), readable with `torch.jit.load(path, _extra_files={"metadata.json": ""})`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from imgrec.errors import ImgrecError
from imgrec.export.onnx_export import WithSoftmax

METADATA_FILE = "metadata.json"


def export_torchscript(
    model: nn.Module, input_size: int, path: Path, metadata: dict, temperature: float = 1.0
) -> None:
    """Trace in eval mode on one image (the batch axis stays free) and save to `path`."""
    wrapped = WithSoftmax(model, temperature).eval()
    example = torch.zeros(1, 3, input_size, input_size)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapped, example, check_trace=False)
            traced = torch.jit.freeze(traced)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is one sentence for the user
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImgrecError(f"this model could not be traced to TorchScript ({first}).") from exc
    extra = {METADATA_FILE: json.dumps(metadata)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still loads
        torch.jit.save(traced, str(path), _extra_files=extra)


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    """The traced module and its metadata."""
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[METADATA_FILE] or "{}")
