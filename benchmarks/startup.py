"""Start-up time of the `imgrec` command line: what a person waits for before anything happens.

Each command runs as a real process (`python -m imgrec ...`), 5 times, alternating with the
same command of a baseline checkout (default: commit 4ead232, the CLI before it became a
package with lazy imports) run from its source tree with the same interpreter and packages:

    git worktree add /tmp/before 4ead232      # once; the script does it when missing
    python benchmarks/startup.py [--model MODEL.imgrec] [--baseline /tmp/before/src]

Prints one JSON line per command: the median seconds of each side, every run, and the ratio
after / before (machines are noisy: compare the ratio, measured in the same run). The commands
are `--help`, `models`, `info MODEL` and a one-image `predict MODEL IMAGE`, the latter twice:
with the model's ONNX graph kept from an earlier run (what `imgrec train` leaves, and every
predict after the first), and with an empty cache each run (a model file new to this machine:
torch is imported and the graph exported). Each side has its own cache folder. Without a model
file, a head-only model is trained on the bundled sample first (about a minute).

`--mistakes` times the commands a person gets wrong instead (a missing folder or model file, a
budget that is not a duration, a port in use, lr-find on a classic family, tune without DATA):
how long until the one-sentence error, against `--baseline-commit` (e.g. b793bdf, before those
checks moved in front of the heavy imports):

    python benchmarks/startup.py --mistakes --baseline /tmp/before-b793bdf/src \
        --baseline-commit b793bdf
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from presets import commit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "src" / "imgrec" / "sample" / "hymenoptera"
IMAGE = sorted((SAMPLE / "val" / "ants").glob("*.jpg"))[0]
BASELINE_COMMIT = "4ead232"  # the default baseline
DEFAULT_BASELINE = Path(tempfile.gettempdir()) / "before"
DEFAULT_MODEL = Path(tempfile.gettempdir()) / "startup-run" / "model.imgrec"
# Targets on the project's 2-core reference machine, in seconds.
TARGETS = {"--help": 1.5, "models": 1.5, "info": 2.0, "predict": 4.0, "predict-new-file": 4.0}
MISSING = Path(tempfile.gettempdir()) / "imgrec-startup-no-such-folder"


def ensure_baseline(src: Path, commit: str = BASELINE_COMMIT) -> Path:
    if not (src / "imgrec").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", str(src.parent), commit],
            check=True,
            stdout=sys.stderr,
        )
    return src


def ensure_model(path: Path) -> Path:
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "imgrec", "train", str(SAMPLE), "--epochs", "0", "-q"]
            + ["--out", str(path.parent), "--exist-ok"],
            check=True,
            stdout=sys.stderr,  # stdout stays JSON lines
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
    return path


def seconds(src: Path, args: list[str], cache: Path | None = None, exit_code: int = 0) -> float:
    """Wall time of `python -m imgrec ARGS` with imgrec imported from `src` and its caches in
    `cache` (default: a fresh empty folder, deleted afterwards); it must end with `exit_code`."""
    if cache is None:
        with tempfile.TemporaryDirectory(prefix="imgrec-startup-cache-") as fresh:
            return seconds(src, args, Path(fresh), exit_code)
    env = {**os.environ, "PYTHONPATH": str(src), "IMGREC_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "imgrec", *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if done.returncode != exit_code:
        raise SystemExit(
            f"imgrec {' '.join(args)} ({src}) exited {done.returncode}, not {exit_code}:\n"
            f"{done.stderr[-2000:]}"
        )
    return wall


def mistakes(model: Path, port: int) -> dict[str, list[str]]:
    """Commands that must end in a one-sentence error (exit 1), by case name."""
    return {
        "train-missing-data": ["train", str(MISSING), "--out", str(MISSING / "run")],
        "audit-missing-data": ["audit", str(MISSING)],
        "predict-missing-model": ["predict", str(MISSING / "model.imgrec"), str(IMAGE)],
        "compare-bad-budget": ["compare", str(SAMPLE), "--budget", "soon"],
        "lr-find-classic-family": ["lr-find", str(SAMPLE), "--model", "svm-hog"],
        "tune-no-data": ["tune", "--out", str(Path(tempfile.mkdtemp()) / "search")],
        "serve-port-in-use": ["serve", str(model), "--port", str(port)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE / "src")
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mistakes", action="store_true", help="time the errors instead")
    options = parser.parse_args()
    baseline = ensure_baseline(options.baseline, options.baseline_commit)
    model = ensure_model(options.model)
    busy = socket.socket()  # a port in use, for serve-port-in-use
    if options.mistakes:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        commands = mistakes(model, busy.getsockname()[1])
    else:
        commands = {
            "--help": ["--help"],
            "models": ["models"],
            "info": ["info", str(model)],
            "predict": ["predict", str(model), str(IMAGE)],
            "predict-new-file": ["predict", str(model), str(IMAGE)],
        }
    exit_code = 1 if options.mistakes else 0
    this_commit = commit(ROOT)
    sides = {"after": ROOT / "src", "before": baseline}
    kept = {side: Path(tempfile.mkdtemp(prefix=f"imgrec-{side}-cache-")) for side in sides}
    for name, args in commands.items():
        caches = {side: None if name == "predict-new-file" else kept[side] for side in sides}
        for side in sides:  # warm the file cache, __pycache__ and the kept graph of both sides
            seconds(sides[side], args, caches[side], exit_code)
        times: dict[str, list[float]] = {"after": [], "before": []}
        for i in range(options.runs):
            order = ("after", "before") if i % 2 == 0 else ("before", "after")
            for side in order:  # alternating: a burst of other work slows both alike
                times[side].append(seconds(sides[side], args, caches[side], exit_code))
        after, before = statistics.median(times["after"]), statistics.median(times["before"])
        line = {
            "benchmark": "startup-mistakes" if options.mistakes else "startup",
            "command": "imgrec " + " ".join(a if a != str(model) else "MODEL" for a in args),
            "case": name,
            "runs": options.runs,
            "after_s": round(after, 3),
            "before_s": round(before, 3),
            "ratio": round(after / before, 3),
            "target_s": TARGETS.get(name),
            "after_all": [round(t, 3) for t in times["after"]],
            "before_all": [round(t, 3) for t in times["before"]],
            "baseline": f"{options.baseline_commit} ({baseline})",
            "commit": this_commit,
            "date": time.strftime("%Y-%m-%d"),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(line).replace(str(IMAGE), "IMAGE"), flush=True)
    busy.close()


if __name__ == "__main__":
    main()
