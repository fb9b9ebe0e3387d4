"""A run's work folder: history.csv and the best weights so far, written as training goes."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from imgrec.errors import ImgrecError


class TrainingInterrupted(ImgrecError):
    """Raised after Ctrl-C once finished epochs are safely on disk."""


HISTORY_FIELDS = (
    "phase",
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_score",
    "lr",
    "seconds",
    "time",
    "params",
)
TEXT_FIELDS = ("phase", "params")  # the rest are numbers


class RunState:
    """Files in the run's work folder: history.csv, best.safetensors + best.json."""

    def __init__(self, folder: Path, on_row: Callable[[dict], None] | None = None):
        self.folder = Path(folder)
        self.on_row = on_row  # sees each new epoch row, e.g. to prune a search trial
        self.folder.mkdir(parents=True, exist_ok=True)
        self.history_path = self.folder / "history.csv"
        self.best_weights = self.folder / "best.safetensors"
        self.best_info = self.folder / "best.json"

    def history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        with self.history_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return [
            {
                k: (v if k in TEXT_FIELDS else _number(v))
                for k, v in row.items()
                if k and v not in ("", None)
            }
            for row in rows
        ]

    def append_history(self, row: dict) -> None:
        """Append one epoch; `time` (Unix seconds) lets benchmarks time from process start."""
        self._write({**row, "time": round(time.time(), 3)})
        if self.on_row is not None:
            self.on_row(row)

    def _write(self, row: dict) -> None:
        new = not self.history_path.exists()
        with self.history_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def keep_history(self, keep) -> None:
        """Rewrite history.csv with only the rows `keep(row)` accepts."""
        rows = [row for row in self.history() if keep(row)]
        self.history_path.unlink(missing_ok=True)
        for row in rows:
            self._write(row)

    def best(self) -> dict | None:
        if not (self.best_info.exists() and self.best_weights.exists()):
            return None
        return json.loads(self.best_info.read_text())

    def save_best(self, state_dict: dict, row: dict) -> None:
        """Weights first, then the JSON that marks them valid; both replaced atomically."""
        from safetensors.torch import save_file  # torch: not at import, so `imgrec --help` is quick

        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        tmp = self.best_weights.with_suffix(".tmp")
        save_file(tensors, tmp)
        os.replace(tmp, self.best_weights)
        tmp = self.best_info.with_suffix(".tmp")
        tmp.write_text(json.dumps(row, indent=2))
        os.replace(tmp, self.best_info)


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value
