"""`imgrec predict` throughput: end to end vs a plain PyTorch loop vs ONNX Runtime model-only.

On one folder (default: the 1000 validation images of cats_and_dogs_filtered), in one run:
- `imgrec predict MODEL DATA --engine onnx -f csv -o FILE` as a real process: the rate it
  reports (decode + resize + forward + CSV, from the first decode to the last row), the rate
  over the whole process (with Python start-up, model load and in-memory ONNX export) and its
  peak RSS (also on a fifth of the images, to show memory does not grow with the count);
- the same streaming code (`BatchPredictor.predict_to_file`, what the CLI calls) and ONNX
  Runtime model-only (that engine on a pre-made batch of 32) in one process, alternating in
  short slices over the whole folder: this pair gives the predict / model-only ratio, which a
  burst of other work on a shared machine then slows alike;
- a straightforward PyTorch loop: PIL open, torchvision Resize/CenterCrop/ToTensor/Normalize,
  the model in eval mode under no_grad, batches of 32, no tuning (its own process);
- optionally (--int8) the same for an int8 file from `imgrec export --int8`, given to predict.
Prints one JSON line.

    python benchmarks/predict.py [MODEL.imgrec] [--data DIR] [--int8]

Without a model file, a head-only model is trained on the bundled sample first (~30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = Path(tempfile.gettempdir()) / "imgrec-bench-predict" / "model.imgrec"
DEFAULT_DATA = Path("/work/shared/datasets/cats_and_dogs_filtered/validation")
SAMPLE = Path(__file__).resolve().parent.parent / "src" / "imgrec" / "sample" / "hymenoptera"
TORCH_LOOP_IMAGES = 320  # the slow baseline runs on a prefix; its rate is per image anyway


def ensure_model(path: Path) -> Path:
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "imgrec", "train", str(SAMPLE), "--epochs", "0", "-q"]
            + ["--out", str(path.parent), "--exist-ok", "--no-audit"],
            check=True,
            stdout=sys.stderr,  # stdout stays one JSON line
        )
    return path


def run_child(args: list[str]) -> tuple[str, float, float]:
    """Run a command; (stdout, wall seconds, peak RSS MB of that process)."""
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}... failed:\n{stderr[-2000:]}")
    peak = re.search(r"peak_rss_mb=([\d.]+)", stderr)
    return stdout, wall, float(peak.group(1)) if peak else float("nan")


def cli_predict(model: Path, files: list[Path] | Path, out: Path) -> dict:
    """`imgrec predict` in a child process; its own rate and the whole process's rate."""
    code = (  # VmHWM, not ru_maxrss: that one carries over the parent's peak through fork+exec
        "import sys, re; from imgrec.cli import main\n"
        "try:\n    main()\nfinally:\n"
        "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "    print(f'peak_rss_mb={int(hwm) / 1024:.0f}', file=sys.stderr)\n"
    )
    inputs = [str(files)] if isinstance(files, Path) else [str(f) for f in files]
    args = [sys.executable, "-c", code, "predict", str(model), *inputs]
    args += ["--engine", "onnx", "-f", "csv", "-o", str(out), "-q"]
    stdout, wall, rss = run_child(args)
    match = re.search(r"wrote (\d+) predictions .*?; (\d+) img/s", stdout)
    if not match:
        raise SystemExit(f"unexpected predict output: {stdout}")
    n = int(match.group(1))
    return {"images": n, "rate": float(match.group(2)), "process_rate": n / wall, "rss": rss}


# ---- the parts that run in child processes -----------------------------------------------
def part_torch_loop(model: Path, data: Path) -> float:
    """A straightforward PyTorch loop, as a tutorial writes it."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from imgrec.api import ImageClassifier

    clf = ImageClassifier.load(model)
    p = clf.preprocessing
    network = clf.network.eval()
    transform = transforms.Compose(
        [
            transforms.Resize(p.resize_size),
            transforms.CenterCrop(p.input_size),
            transforms.ToTensor(),
            transforms.Normalize(p.mean, p.std),
        ]
    )
    files = sorted(f for f in data.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = files[:TORCH_LOOP_IMAGES]
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(files), 32):
            batch = torch.stack(
                [transform(Image.open(f).convert("RGB")) for f in files[i : i + 32]]
            )
            torch.softmax(network(batch), dim=1).argmax(1).tolist()
    return len(files) / (time.perf_counter() - start)


def part_pair(model: Path, data: Path, slices: int = 5, seconds: float = 3.0) -> str:
    """predict_to_file over the folder in `slices` parts, each after `seconds` of model-only."""
    import json as _json

    from imgrec.bundle.predictor import open_predictor
    from imgrec.data.inputs import expand_inputs
    from imgrec.infer.batches import iter_decoded_batches

    predictor = open_predictor(model, "onnx", 32)
    files = expand_inputs([data])
    _, batch, _ = next(iter_decoded_batches(files[:32], predictor.preprocessing, 32))
    predictor.engine(batch)  # warm-up
    model_images = model_time = predict_images = predict_time = 0.0
    step = -(-len(files) // slices)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(slices):
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                predictor.engine(batch)
                model_images += len(batch)
            model_time += time.perf_counter() - start
            part = files[i * step : (i + 1) * step]
            start = time.perf_counter()
            predictor.predict_to_file(part, Path(tmp) / f"{i}.csv", "csv")
            predict_time += time.perf_counter() - start
            predict_images += len(part)
    return _json.dumps(
        {"model_only": model_images / model_time, "predict": predict_images / predict_time}
    )


PARTS = {"torch-loop": part_torch_loop, "pair": part_pair}


def part(name: str, model: Path, data: Path):
    stdout, _, _ = run_child([sys.executable, __file__, "--part", name, str(model), str(data)])
    return json.loads(stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--int8", action="store_true", help="also an int8 export given to predict")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("part_data", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # a child: print the rate
        print(PARTS[args.part](args.model, args.part_data))  # a float or a JSON object
        return
    model = ensure_model(args.model)
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-predict-") as tmp:
        tmp = Path(tmp)
        models = {"fp32": model}
        if args.int8:
            from imgrec.export import export_model

            models["int8"] = export_model(model, "onnx", tmp / "m.int8.onnx", int8=True).path
        best: dict[str, float] = {}
        rss: dict[str, float] = {}

        def keep(key: str, value: float) -> None:
            best[key] = max(best.get(key, 0.0), value)

        pairs: dict[str, list[dict]] = {kind: [] for kind in models}
        for _ in range(args.rounds):
            for kind, path in models.items():
                pairs[kind].append(part("pair", path, args.data))
                run = cli_predict(path, args.data, tmp / "out.csv")
                keep(f"{kind}_predict", run["rate"])
                keep(f"{kind}_predict_process", run["process_rate"])
                rss[f"{kind}_1000"] = run["rss"]
                images = run["images"]
            keep("torch_loop", part("torch-loop", model, args.data))
        # memory: the same command over a fifth of the images, to show RSS does not grow with n
        from imgrec.data.inputs import expand_inputs

        few = expand_inputs([args.data])[: max(1, images // 5)]
        rss["fp32_fifth"] = cli_predict(model, few, tmp / "few.csv")["rss"]

    for kind, rounds in pairs.items():  # the round with the best model-only rate, both figures
        top = max(rounds, key=lambda x: x["model_only"])
        best[f"{kind}_model_only"], best[f"{kind}_pair_predict"] = top["model_only"], top["predict"]
    r = {k: round(v, 1) for k, v in best.items()}
    result = {
        "benchmark": "predict",
        "model": str(model),
        "data": str(args.data),
        "images": images,
        "threads": os.cpu_count(),
        "predict_onnx_img_per_s": r["fp32_predict"],
        "predict_onnx_process_img_per_s": r["fp32_predict_process"],
        "torch_loop_img_per_s": r["torch_loop"],
        "paired_predict_img_per_s": r["fp32_pair_predict"],
        "paired_ort_model_only_img_per_s": r["fp32_model_only"],
        "predict_vs_torch_loop": round(best["fp32_predict"] / best["torch_loop"], 2),
        "predict_vs_model_only": round(best["fp32_pair_predict"] / best["fp32_model_only"], 3),
        "predict_peak_rss_mb": rss["fp32_1000"],
        f"predict_peak_rss_mb_{max(1, images // 5)}_images": rss["fp32_fifth"],
    }
    if "int8" in models:
        result.update(
            predict_int8_img_per_s=r["int8_predict"],
            paired_predict_int8_img_per_s=r["int8_pair_predict"],
            paired_ort_int8_model_only_img_per_s=r["int8_model_only"],
            predict_int8_vs_model_only=round(
                best["int8_pair_predict"] / best["int8_model_only"], 3
            ),
            predict_int8_vs_torch_loop=round(best["int8_predict"] / best["torch_loop"], 2),
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
