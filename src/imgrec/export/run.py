"""`export_model`: load a model file, write ONNX / int8 ONNX / TorchScript, check parity.

The exported file is first written next to its destination under a temporary name and only
renamed into place once the parity check passes, so a failed export never leaves a file that
looks usable. The parity figures are written either way (`<out>.parity.json`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgrec.bundle.model import TrainedModel
from imgrec.errors import ImgrecError
from imgrec.export import parity
from imgrec.export.onnx_export import (
    export_onnx_bytes,
    onnx_metadata,
    onnx_session,
    save_with_metadata,
    session_runner,
)

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "hymenoptera"
BENCH_BATCH, BENCH_THREADS = 32, 2


@dataclass
class ExportResult:
    """Where the export went and how closely it matches the PyTorch model."""

    path: Path
    format: str
    int8: bool
    parity: dict
    parity_path: Path


@dataclass
class ExportJob:
    """What an exporter works from: the model, where to write, and the parity check's data."""

    model: TrainedModel
    tmp: Path  # a private folder beside the destination, for intermediate files
    staged: Path  # where the exporter writes; renamed into place after the parity check
    metadata: dict  # string -> JSON string: classes, preprocessing, model facts
    data: parity.CalibrationSet
    reference: np.ndarray  # the PyTorch model's probabilities on data.images
    int8: bool
    measure_speed: bool


@dataclass(frozen=True)
class Exporter:
    """One export format: its file suffix(es), what runs the file, and the function that
    writes it and returns the parity figures ({"parity": ..., ...})."""

    suffix: str
    runtime: str  # the Python package that runs the exported file, checked before exporting
    write: Callable[[ExportJob], dict]
    int8_suffix: str | None = None  # None: no int8 variant


def default_output(model_path: Path, fmt: str, int8: bool = False) -> Path:
    """runs/x/model.imgrec -> runs/x/model.onnx, model.int8.onnx or model.pt."""
    exporter = EXPORTERS[fmt]
    suffix = exporter.int8_suffix if int8 and exporter.int8_suffix else exporter.suffix
    return Path(model_path).with_suffix(suffix)


def export_model(
    model_path: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    *,
    int8: bool = False,
    calibration: str | Path | None = None,
    calibration_images: int = parity.CALIBRATION_IMAGES,
    measure_speed: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> ExportResult:
    """Export `model_path` and check it on real images (`calibration`, else the bundled sample).

    Raises ImgrecError (one sentence) for a bad model file, an unwritable output, an unknown
    format, or an export that strays beyond tolerance.
    """
    from imgrec.bundle.model import load_model
    from imgrec.models.families import get_family
    from imgrec.runtime import configure_cpu_runtime

    if fmt not in EXPORTERS:
        raise ImgrecError(f"unknown export format '{fmt}'; use one of: {', '.join(FORMATS)}.")
    exporter = EXPORTERS[fmt]
    if int8 and exporter.int8_suffix is None:
        with_int8 = [name for name, e in EXPORTERS.items() if e.int8_suffix]
        raise ImgrecError(f"--int8 is available for --format {' or '.join(with_int8)} only.")
    if importlib.util.find_spec(exporter.runtime) is None:
        raise ImgrecError(
            f"--format {fmt} needs {exporter.runtime}: pip install {exporter.runtime}"
        )
    model_path = Path(model_path)
    clf = load_model(model_path)
    if not get_family(clf.spec.name).traits.exportable:
        raise ImgrecError(
            f"{model_path} is a scikit-learn model ({clf.spec.name}); export covers neural "
            "networks. Serve it with `imgrec serve` or load it with ImageClassifier.load."
        )
    out = Path(out) if out is not None else default_output(model_path, fmt, int8)
    _check_writable(out)
    configure_cpu_runtime()
    source = Path(calibration) if calibration is not None else SAMPLE
    say(f"checking on up to {calibration_images} images from {source}")
    data = parity.calibration_set(source, clf.preprocessing, clf.classes, calibration_images)
    reference = parity.torch_probabilities(clf.network, data.images, clf.temperature)
    metadata = onnx_metadata(
        clf.classes, clf.preprocessing, clf.metadata, "int8 static QDQ" if int8 else "none"
    )
    with tempfile.TemporaryDirectory(prefix=".imgrec-export-", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        job = ExportJob(clf, Path(tmp), staged, metadata, data, reference, int8, measure_speed)
        figures = exporter.write(job)
        figures = {"format": fmt, "int8": int8, "calibration": str(source), **figures}
        parity_path = out.with_name(out.name + ".parity.json")
        parity_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        what = f"the {'int8 ' if int8 else ''}{fmt} export"
        parity.check(figures["parity"], int8=int8, what=what)
        os.replace(staged, out)
    return ExportResult(out, fmt, int8, figures, parity_path)


def _onnx(job: ExportJob) -> dict:
    """ONNX (opset from onnx_export), with int8 static quantisation when asked."""
    from imgrec.export.quantize import quantize_int8
    from imgrec.models.static_pad import with_static_padding

    clf, tmp, staged, metadata, data, reference = (
        job.model,
        job.tmp,
        job.staged,
        job.metadata,
        job.data,
        job.reference,
    )
    int8, measure_speed = job.int8, job.measure_speed
    size = clf.preprocessing.input_size
    fp32_path = tmp / "fp32.onnx" if int8 else staged
    save_with_metadata(
        export_onnx_bytes(with_static_padding(clf.network, size), size, clf.temperature),
        fp32_path,
        metadata,
    )
    fp32 = onnx_session(fp32_path)
    fp32_probs = parity.batched(session_runner(fp32), data.images)
    figures = {"fp32_parity": parity.compare(reference, fp32_probs, data.targets)}
    parity.check(figures["fp32_parity"], int8=False, what="the fp32 onnx export")
    if not int8:
        return {"parity": figures["fp32_parity"]}
    quantize_int8(fp32_path, staged, data.images)
    save_with_metadata(staged.read_bytes(), staged, metadata)
    quantized = onnx_session(staged)
    figures["parity"] = parity.compare(
        reference, parity.batched(session_runner(quantized), data.images), data.targets
    )
    if measure_speed:
        figures["speed"] = onnx_speed(fp32_path, staged, data.images)
    return figures


def onnx_speed(fp32_path: Path, int8_path: Path, images: torch.Tensor) -> dict:
    """img/s of fp32 and int8 ONNX Runtime on one batch of 32, 2 threads, and the ratio.

    The two alternate for three rounds and each keeps its best round: on a shared machine a
    burst of other work then slows one round of each, not all of one model's.
    """
    batch = _bench_batch(images)
    runners = {
        name: session_runner(onnx_session(path, threads=BENCH_THREADS))
        for name, path in (("fp32", fp32_path), ("int8", int8_path))
    }
    best = dict.fromkeys(runners, 0.0)
    for _ in range(3):
        for name, run in runners.items():
            rate = parity.images_per_second(lambda run=run: run(batch), len(batch), seconds=1.0)
            best[name] = max(best[name], rate)
    rates = {f"{name}_img_per_s": round(rate, 2) for name, rate in best.items()}
    rates["speedup"] = round(rates["int8_img_per_s"] / rates["fp32_img_per_s"], 3)
    rates.update(batch=len(batch), threads=BENCH_THREADS)
    return rates


def _bench_batch(images: torch.Tensor) -> np.ndarray:
    """32 images, repeating the calibration images when there are fewer."""
    reps = -(-BENCH_BATCH // len(images))
    return images.repeat(reps, 1, 1, 1)[:BENCH_BATCH].contiguous().numpy()


def _torchscript(job: ExportJob) -> dict:
    """A traced TorchScript module with the metadata as extra files."""
    from imgrec.export.torchscript import export_torchscript, load_torchscript

    clf, staged, metadata, data, reference = (
        job.model,
        job.staged,
        job.metadata,
        job.data,
        job.reference,
    )
    plain = {key: json.loads(value) for key, value in metadata.items()}
    export_torchscript(clf.network, clf.preprocessing.input_size, staged, plain, clf.temperature)
    module, _ = load_torchscript(staged)

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).numpy()

    return {"parity": parity.compare(reference, parity.batched(run, data.images), data.targets)}


# The export formats, by the name `imgrec export --format` takes. A new format is one row here
# and one function that writes the file from an ExportJob and returns its parity figures.
EXPORTERS: dict[str, Exporter] = {
    "onnx": Exporter(".onnx", "onnxruntime", _onnx, int8_suffix=".int8.onnx"),
    "torchscript": Exporter(".pt", "torch", _torchscript),
}
FORMATS = tuple(EXPORTERS)


def _check_writable(out: Path) -> None:
    """Fail before any work when `out` cannot be written (missing parent made, if possible)."""
    if out.is_dir():
        raise ImgrecError(f"{out} is a folder; give a file name for the export.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImgrecError(f"cannot create the folder {out.parent} ({exc.strerror}).") from exc
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ImgrecError(f"cannot write {out}: permission denied.")
