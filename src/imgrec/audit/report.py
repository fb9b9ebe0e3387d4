"""audit.json for machines and audit.html for people: one self-contained page, every finding
with thumbnails, the advice next to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader
from matplotlib.figure import Figure

from imgrec.audit.result import CHECKS, AuditResult, Flag
from imgrec.evaluate.html import data_uri, png_bytes, thumbnail_uri

_TEMPLATES = Path(__file__).parent / "templates"
MAX_TILES = 48  # per section; audit.json lists every file
MAX_GROUPS = 40


def save_audit(result: AuditResult, folder: str | Path) -> tuple[Path, Path]:
    """Write audit.json and audit.html into `folder`; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "audit.json"
    json_path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    html_path = folder / "audit.html"
    html_path.write_text(render_html(result), encoding="utf-8")
    return json_path, html_path


def render_html(result: AuditResult) -> str:
    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True)
    flags = result.flags()
    sections = []
    for check, (title, severity, advice) in CHECKS.items():
        if check in (
            "exact_duplicate",
            "near_duplicate",
            "label_conflict",
            "near_label_conflict",
            "leakage",
        ):
            continue  # shown as groups, not tiles
        if check == "imbalance":
            continue  # its own section with the chart
        hits = [f for f in flags if f.check == check]
        if hits:
            sections.append(
                {
                    "check": check,
                    "title": title,
                    "severity": severity,
                    "advice": advice,
                    "count": len(hits),
                    "tiles": [_tile(f, result.root) for f in hits[:MAX_TILES]],
                }
            )
    return env.get_template("audit.html.j2").render(
        title=f"imgrec audit — {result.root.name}",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        result=result,
        summary=result.summary(),
        counts=result.counts(),
        checks=CHECKS,
        cards=_cards(result),
        plots={name: data_uri(png_bytes(fig), "image/png") for name, fig in _figures(result)},
        groups=[_group(g, result.root) for g in result.duplicates[:MAX_GROUPS]],
        n_groups=len(result.duplicates),
        sections=sections,
        outliers=[
            {
                **_tile_parts(o.path, result.root),
                "label": o.label,
                "split": o.split,
                "score": o.score,
                "flagged": o.flagged,
            }
            for o in result.outliers
        ],
        flagged_files=_per_file(flags, result.root),
    )


def _cards(result: AuditResult) -> list[tuple[str, str]]:
    cards = [
        ("Images", str(result.n_images)),
        ("Classes", str(len(result.classes))),
        ("Imbalance ratio", f"{result.imbalance_ratio:.1f}"),
        ("Unreadable", str(len(result.unreadable))),
        ("Duplicate groups", str(len(result.duplicates))),
        ("Leaked files", str(result.leaked_files)),
    ]
    if result.embeddings_checked:
        cards += [
            ("Likely label errors", str(len(result.label_suspects))),
            ("Outliers", str(sum(o.flagged for o in result.outliers))),
        ]
    return cards


def _figures(result: AuditResult) -> list[tuple[str, Figure]]:
    figures = [("balance", _balance_figure(result))]
    if result.facts:
        figures.append(("properties", _properties_figure(result)))
    return figures


def _balance_figure(result: AuditResult) -> Figure:
    classes = result.classes
    fig = Figure(figsize=(min(12, 4 + 0.6 * len(classes)), 3.6), layout="constrained")
    ax = fig.subplots()
    parts = result.split_counts or {"all": result.class_counts}
    bottom = np.zeros(len(classes))
    for name, counts in parts.items():
        values = np.array([counts.get(c, 0) for c in classes], dtype=float)
        ax.bar(range(len(classes)), values, bottom=bottom, label=name)
        bottom += values
    ax.set_xticks(range(len(classes)), [c[:18] for c in classes], rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_title(f"Images per class (ratio {result.imbalance_ratio:.1f})")
    if len(parts) > 1:
        ax.legend()
    return fig


def _properties_figure(result: AuditResult) -> Figure:
    from imgrec.audit.result import BLUR_BELOW, TINY_SIDE

    w = np.array([f.width for f in result.facts], dtype=float)
    h = np.array([f.height for f in result.facts], dtype=float)
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    sizes, aspect, bright, blur = fig.subplots(1, 4)
    sizes.scatter(w, h, s=6, alpha=0.5)
    sizes.set_xscale("log")
    sizes.set_yscale("log")
    sizes.axvline(TINY_SIDE, color="tab:red", lw=0.8)
    sizes.axhline(TINY_SIDE, color="tab:red", lw=0.8)
    sizes.set(xlabel="width px", ylabel="height px", title="Sizes")
    aspect.hist(w / h, bins=30)
    aspect.set(xlabel="width / height", title="Aspect ratios")
    bright.hist([f.brightness for f in result.facts], bins=30, range=(0, 255))
    bright.set(xlabel="mean brightness", title="Brightness")
    blur.hist(np.log10(np.maximum([f.blur for f in result.facts], 1e-3)), bins=30)
    blur.axvline(np.log10(BLUR_BELOW), color="tab:red", lw=0.8)
    blur.set(xlabel="log10 sharpness", title="Sharpness (Laplacian variance)")
    return fig


def _tile_parts(path: Path, root: Path) -> dict:
    return {"name": _relative(path, root), "path": str(path), "thumbnail": thumbnail_uri(path)}


def _tile(flag: Flag, root: Path) -> dict:
    return {
        **_tile_parts(flag.path, root),
        "label": flag.label,
        "split": flag.split,
        "detail": flag.detail,
    }


def _group(group, root: Path) -> dict:
    return {
        "kind": group.kind,
        "similarity": group.similarity,
        "label_conflict": group.label_conflict,
        "leakage": group.leakage,
        "members": [
            {**_tile_parts(p, root), "label": lab, "split": sp}
            for p, lab, sp in zip(group.paths, group.labels, group.splits, strict=True)
        ],
    }


def _per_file(flags: list[Flag], root: Path) -> list[tuple[str, str]]:
    by_file: dict[str, list[str]] = {}
    for f in flags:
        by_file.setdefault(_relative(f.path, root), []).append(CHECKS[f.check][0])
    return sorted((name, "; ".join(dict.fromkeys(checks))) for name, checks in by_file.items())


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)
