"""Deployable copies of a model file: ONNX (fp32 or int8) and TorchScript, each parity-checked.

`export_model` is the one entry point the CLI and notebooks call; every export is followed by a
parity check on real images, so a file that would predict differently is never handed over
silently.
"""

from imgrec.export.run import FORMATS, ExportResult, default_output, export_model

__all__ = ["FORMATS", "ExportResult", "default_output", "export_model"]
