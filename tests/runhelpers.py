"""Shared test helpers: tiny real datasets, the real CLI (run, or started and interrupted).

Datasets are copies of the bundled ants-vs-bees sample (real photos, so the real model has
something to learn); the CLI runs as `python -m imgrec` in a subprocess, exactly as a user runs
it, with a plain (non-terminal) stdout and stderr.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from imgrec.cli import SAMPLE

CLASSES = ("ants", "bees")


def fast_flags(epochs: int = 1) -> list[str]:
    """CLI flags for a seconds-long training: `epochs` fine-tuning epochs after the head."""
    return ["--epochs", str(epochs), "-q"]


def sample_files(split: str, label: str, n: int, skip: int = 0) -> list[Path]:
    """The first `n` photos (after `skip`) of one class of the bundled sample, sorted by name."""
    files = sorted((SAMPLE / split / label).glob("*.jpg"))
    assert len(files) >= skip + n, f"the sample has only {len(files)} {split}/{label} images"
    return files[skip : skip + n]


def copy_files(files: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, folder / f.name)) for f in files]


def make_split_dataset(root: Path, n_train: int = 8, n_val: int = 4) -> Path:
    """root/{train,val}/{ants,bees}/*.jpg: val is scored as the test split, and validation
    images are held out of train."""
    for label in CLASSES:
        copy_files(sample_files("train", label, n_train), root / "train" / label)
        copy_files(sample_files("val", label, n_val), root / "val" / label)
    return root


def make_class_dataset(root: Path, n: int = 8, skip: int = 0) -> Path:
    """root/{ants,bees}/*.jpg: one folder per class, no splits."""
    for label in CLASSES:
        copy_files(sample_files("train", label, n, skip), root / label)
    return root


def run_imgrec(*args, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m imgrec ARGS` with captured text output (stdout and stderr are pipes)."""
    return subprocess.run(
        [sys.executable, "-m", "imgrec", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        cwd=cwd,
        env=cli_env(),
    )


def start_imgrec(*args, log: Path) -> subprocess.Popen:
    """`python -m imgrec ARGS` in the background, stderr to `log`, stdout to the same name
    with .out, and Ctrl-C able to reach it."""
    with open(log.with_suffix(".out"), "w") as out, open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "imgrec", *(str(a) for a in args)],
            stdout=out,
            stderr=err,
            env=cli_env(),
            # A shell that runs us in the background (nohup, `&`, some CI runners) leaves
            # SIGINT ignored, and children inherit that; Ctrl-C must reach imgrec here.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def signal_when(
    process: subprocess.Popen,
    condition: Callable[[], bool],
    what: str,
    log: Path,
    sig: int = signal.SIGINT,
    timeout: float = 300,
) -> int:
    """Send `sig` (Ctrl-C by default) once `condition` holds and return the exit code; a
    process still running two minutes later is killed."""
    try:
        wait_for(condition, process, timeout, what, log)
        process.send_signal(sig)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode


def cli_env() -> dict[str, str]:
    """The caller's environment minus settings that change how Rich lays out text."""
    env = dict(os.environ)
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def squash(text: str) -> str:
    """Text without any whitespace: compare messages regardless of where lines were wrapped."""
    return "".join(text.split())


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 1, no traceback, one line on stderr that contains every fragment.

    The one-line check comes last so a failure there means only that: the message is right
    but was spread over several lines (for example wrapped at 80 columns).
    """
    err = result.stderr
    assert result.returncode == 1, (
        f"exit code {result.returncode}, expected 1\nstdout:\n{result.stdout}\nstderr:\n{err}"
    )
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert squash(fragment).lower() in squash(err).lower(), (
            f"{fragment!r} not in stderr:\n{err}"
        )
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    return lines[0]


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2 (Click's usage error), no traceback, a message naming the problem."""
    assert result.returncode == 2, (
        f"exit code {result.returncode}, expected 2\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert squash(fragment).lower() in squash(result.stderr).lower(), result.stderr


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def epochs_by_phase(history_csv: Path) -> dict[str, list[int]]:
    """{"head": [1, 2, ...], "finetune": [1, 2, ...]} in file order (repeats kept)."""
    phases: dict[str, list[int]] = {}
    if not history_csv.exists():
        return phases
    for row in read_csv(history_csv):
        if row.get("phase") and row.get("epoch"):
            phases.setdefault(row["phase"], []).append(int(float(row["epoch"])))
    return phases


def wait_for(
    condition: Callable[[], bool],
    process: subprocess.Popen,
    timeout: float,
    what: str,
    log: Path | None = None,
) -> None:
    """Poll `condition` every 50 ms until it holds; fail early if `process` exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(
                f"the process exited ({process.returncode}) before {what}:\n{detail}"
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# Every command, in the order `imgrec --help` lists them (the path from photos to a monitored
# model).
COMMANDS = (
    "train",
    "retrain",
    "compare",
    "tune",
    "lr-find",
    "evaluate",
    "predict",
    "embed",
    "info",
    "card",
    "models",
    "demo",
    "studio",
    "augment-preview",
    "audit",
    "split",
    "shards",
    "calibrate",
    "serve",
    "export",
    "drift",
)


def assert_engines_agree(model: Path) -> None:
    """The ONNX graph kept for `model` and eager PyTorch give the same probabilities on six
    sample photos."""
    import numpy as np

    from imgrec.bundle.predictor import open_predictor

    photos = sample_files("val", "bees", 3) + sample_files("val", "ants", 3)
    onnx = open_predictor(model, "onnx", batch_size=4)
    torch_engine = open_predictor(model, "torch", batch_size=4)
    assert onnx.engine.name == "onnx" and torch_engine.engine.name == "torch"
    paths_o, probs_o, _ = onnx.predict_proba(photos)
    paths_t, probs_t, _ = torch_engine.predict_proba(photos)
    assert paths_o == paths_t == photos
    np.testing.assert_allclose(probs_o, probs_t, atol=1e-4)
