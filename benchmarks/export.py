"""Export speed and accuracy: PyTorch eager vs fp32 ONNX Runtime vs int8 ONNX Runtime.

All three run the same model on the same batch of 32 preprocessed photos with 2 threads, in
this one process, so the ratios are comparable even on a noisy machine. Accuracy and top-1
agreement come from the export's own parity check on the calibration images.
Prints one JSON line.

    python benchmarks/export.py [MODEL.imgrec] [--calibration DATA]

Without a model file, a head-only model is trained on the bundled sample first (~30 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from imgrec.api import ImageClassifier
from imgrec.export import export_model
from imgrec.export import parity as P
from imgrec.export.run import BENCH_THREADS, SAMPLE, _bench_batch

DEFAULT_MODEL = Path(tempfile.gettempdir()) / "imgrec-bench-export" / "model.imgrec"


def ensure_model(path: Path) -> Path:
    """The given model file, or a head-only model trained on the bundled sample."""
    if not path.exists():
        folder = path.parent
        subprocess.run(
            [sys.executable, "-m", "imgrec", "train", str(SAMPLE), "--epochs", "0", "-q"]
            + ["--out", str(folder), "--exist-ok", "--no-audit"],
            check=True,
            stdout=sys.stderr,  # stdout stays one JSON line
        )
    return path


def eager_speed(model_path: Path, calibration: Path) -> float:
    """PyTorch eager img/s (channels-last, inference mode) as `imgrec predict` runs it."""
    clf = ImageClassifier.load(model_path)
    data = P.calibration_set(calibration, clf.preprocessing, clf.classes, 32)
    batch = torch.from_numpy(_bench_batch(data.images))
    rounds = [  # best of three, as export_model times the ONNX models
        P.images_per_second(lambda: P.torch_probabilities(clf.network, batch), len(batch), 1.0)
        for _ in range(3)
    ]
    return max(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--calibration", type=Path, default=SAMPLE)
    args = parser.parse_args()
    model = ensure_model(args.model)
    torch.set_num_threads(BENCH_THREADS)
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-export-") as tmp:
        fp32 = export_model(model, "onnx", Path(tmp) / "m.onnx", calibration=args.calibration)
        int8 = export_model(
            model, "onnx", Path(tmp) / "m.int8.onnx", int8=True, calibration=args.calibration
        )
        eager = eager_speed(model, args.calibration)
    speed, quality = int8.parity["speed"], int8.parity["parity"]
    result = {
        "benchmark": "export",
        "model": str(model),
        "calibration": str(args.calibration),
        "images": quality["images"],
        "batch": speed["batch"],
        "threads": BENCH_THREADS,
        "eager_img_per_s": round(eager, 2),
        "onnx_fp32_img_per_s": speed["fp32_img_per_s"],
        "onnx_int8_img_per_s": speed["int8_img_per_s"],
        "fp32_vs_eager": round(speed["fp32_img_per_s"] / eager, 3),
        "int8_vs_fp32": speed["speedup"],
        "int8_vs_eager": round(speed["int8_img_per_s"] / eager, 3),
        "fp32_max_abs_diff": fp32.parity["parity"]["max_abs_diff"],
        "int8_max_abs_diff": quality["max_abs_diff"],
        "int8_top1_agreement": quality["top1_agreement"],
        "pytorch_accuracy": quality.get("reference_accuracy"),
        "int8_accuracy": quality.get("export_accuracy"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
