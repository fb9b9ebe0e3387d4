"""The leaderboard: its rows, their ranking, and its files (CSV and JSON for tools, a plot,
and one self-contained HTML page)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from imgrec.evaluate.html import data_uri, png_bytes
from imgrec.text import csv_cell


@dataclass
class Entry:
    """One leaderboard row."""

    family: str
    kind: str
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    train_seconds: float | None = None
    ms_per_image: float | None = None
    size_mb: float | None = None
    model: str | None = None


@dataclass
class Leaderboard:
    folder: Path
    entries: list[Entry]
    evaluated_on: str
    eval_images: int
    selection_split: bool  # True when the scored split also chose epochs and settings
    budget_seconds: float
    wall_seconds: float
    best: Path | None = None
    source: str = ""
    classes: list[str] = field(default_factory=list)

    def ranked(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "ok"]


def rank_key(e: Entry) -> tuple:
    """Finished rows first, best accuracy, then macro-F1, then the faster model."""
    if e.status != "ok":
        return (1, 0.0, 0.0, 0.0)
    return (0, -e.accuracy, -(e.macro_f1 or 0.0), e.ms_per_image or 0.0)


def entries_as_rows(board: Leaderboard) -> list[dict]:
    return [
        {"rank": i if e.status == "ok" else "", **asdict(e)} for i, e in enumerate(board.entries, 1)
    ]


def write_csv(board: Leaderboard, path: Path) -> None:
    """leaderboard.csv, for people: text cells (a family, a note quoting an error) that would
    start a spreadsheet formula get a leading quote; numbers are written as they are."""
    rows = entries_as_rows(board)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["family"])
        writer.writeheader()
        writer.writerows(
            {k: csv_cell(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows
        )


def write_json(board: Leaderboard, path: Path) -> None:
    document = {
        "source": board.source,
        "classes": board.classes,
        "evaluated_on": board.evaluated_on,
        "eval_images": board.eval_images,
        "selection_split": board.selection_split,
        "budget_seconds": board.budget_seconds,
        "wall_seconds": round(board.wall_seconds, 1),
        "best": str(board.best) if board.best else None,
        "entries": entries_as_rows(board),
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


_TEMPLATES = Path(__file__).parent / "templates"


def save_leaderboard(board: Leaderboard) -> dict[str, Path]:
    """Write leaderboard.{csv,json,png,html} into the board's folder."""
    folder = board.folder
    paths = {ext: folder / f"leaderboard.{ext}" for ext in ("csv", "json", "png", "html")}
    write_csv(board, paths["csv"])
    write_json(board, paths["json"])
    plot = png_bytes(_figure(board)) if board.ranked() else b""
    if plot:
        paths["png"].write_bytes(plot)
    else:
        paths.pop("png")
    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True)
    html = env.get_template("leaderboard.html.j2").render(
        board=board,
        plot=data_uri(plot, "image/png") if plot else None,
        folder=folder,
        relative=lambda p: Path(p).relative_to(folder).as_posix() if p else "",
    )
    paths["html"].write_text(html, encoding="utf-8")
    return paths


def _figure(board: Leaderboard) -> Figure:
    """Accuracy per family, and accuracy against inference cost (the usual trade-off)."""
    rows = board.ranked()
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    bars, scatter = fig.subplots(1, 2, width_ratios=(1.2, 1))
    names = [e.family for e in rows][::-1]
    accs = [100 * e.accuracy for e in rows][::-1]
    bars.barh(names, accs, color="#2563eb")
    for y, acc in enumerate(accs):
        bars.text(acc + 0.5, y, f"{acc:.1f}%", va="center", fontsize=9)
    bars.set_xlim(0, 109)
    bars.set_xlabel(f"accuracy on the {board.evaluated_on} split (%)")
    bars.set_title("accuracy")
    for e in rows:
        scatter.scatter(e.ms_per_image, 100 * e.accuracy, s=40 + 4 * (e.size_mb or 0))
        scatter.annotate(
            e.family,
            (e.ms_per_image, 100 * e.accuracy),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    scatter.set_xscale("log")
    scatter.xaxis.set_major_formatter(ScalarFormatter())
    scatter.xaxis.set_minor_formatter(NullFormatter())
    scatter.set_xlabel("milliseconds per image at inference (log; dot size = model MB)")
    scatter.set_ylabel("accuracy (%)")
    scatter.set_title("accuracy vs. speed")
    scatter.grid(alpha=0.3)
    return fig
