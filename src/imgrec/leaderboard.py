"""The leaderboard's files: CSV and JSON for tools, a plot, and one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from imgrec.compare import Leaderboard, write_csv, write_json
from imgrec.reporting import data_uri, png_bytes

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
