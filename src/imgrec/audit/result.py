"""What an audit found, as plain records: built from the scan, the duplicate search and the
embedding checks, and turned into one-line summaries, audit.json and (via report.py) audit.html.

Every finding names files, so a person can open them; every check says what to do about it.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgrec.data.dataset import Dataset, Skipped
from imgrec.data.facts import ImageFacts

# Image-property limits. EfficientNet-Lite0 looks at 256 px: a short side under 100 px is
# upscaled more than 2.5x, i.e. mostly blur. Brightness is mean luminance 0..255.
TINY_SIDE = 100
HUGE_PIXELS = 40_000_000
DARK_BELOW = 25.0
BRIGHT_ABOVE = 235.0
BLUR_BELOW = 30.0  # Laplacian variance on the scan's fixed-size thumbnail
IMBALANCE_WARN = 3.0  # largest class / smallest class

# check -> (title, severity, what to do). The severity says what a finding means:
# "error": it makes training or evaluation results wrong (a file the data set does not really
#   hold, a test score inflated by copies, one picture with two labels); `imgrec audit` exits 3.
# "warning": worth a look, but the results stay honest; "info": a fact, nothing to do.
CHECKS: dict[str, tuple[str, str, str]] = {
    "unreadable": (
        "Unreadable files",
        "error",
        "Training skips these; fix or delete them so the data set is what you think it is.",
    ),
    "exact_duplicate": (
        "Exact duplicates",
        "warning",
        "Identical files count twice; look at these and keep one copy of each.",
    ),
    "near_duplicate": (
        "Near duplicates",
        "warning",
        "Resized, recompressed or cropped copies; look at these and keep one unless they are "
        "truly different photos. imgrec's own splits keep each group in one split.",
    ),
    "label_conflict": (
        "Duplicates with different labels",
        "error",
        "Identical files carry different labels: at least one is wrong; fix it.",
    ),
    "near_label_conflict": (
        "Near duplicates with different labels",
        "warning",
        "Look at these: either one label is wrong, or they are different photos that look alike.",
    ),
    "leakage": (
        "Leakage between splits",
        "error",
        "Copies of one photo sit in different splits, so validation and test scores are "
        "inflated. Move each group into one split, or let `imgrec split` make the split.",
    ),
    "label_error": (
        "Likely label errors",
        "warning",
        "Cross-validated predictions disagree confidently with the given label; look at these "
        "and relabel the ones that are wrong.",
    ),
    "outlier": (
        "Outliers",
        "warning",
        "Far from every other image in the backbone's feature space; look at these: a "
        "placeholder, screenshot or wrong file does not belong to the task, an unusual real "
        "photo does.",
    ),
    "imbalance": (
        "Class imbalance",
        "warning",
        "Train with `--balance weights` (or `sampler`), collect more of the small classes, "
        "and judge the model by balanced accuracy and per-class recall.",
    ),
    "tiny": (
        f"Tiny images (short side under {TINY_SIDE} px)",
        "warning",
        "They are upscaled a lot for the model; look at these and use larger originals if you "
        "have them.",
    ),
    "dark": ("Very dark images", "warning", "Look at these: they may carry no signal."),
    "bright": ("Very bright images", "warning", "Look at these for overexposure or blank frames."),
    "blurry": (
        "Blurry images",
        "warning",
        "Low sharpness (variance of the Laplacian); look at these: do they still show the class?",
    ),
    "grayscale": (
        "Grayscale images in a colour set",
        "warning",
        "Look at these: the model sees colour everywhere else, so make sure colour is not what "
        "tells the classes apart, or convert the whole set.",
    ),
    "huge": (
        "Huge images",
        "info",
        "Slow to decode on every run; downsizing them to a few megapixels loses nothing.",
    ),
    "alpha": (
        "Transparent images",
        "info",
        "Transparency is flattened onto white when decoded.",
    ),
    "exif_rotated": (
        "EXIF-rotated images",
        "info",
        "The EXIF orientation is applied when decoding; viewers that ignore it show them sideways.",
    ),
}


@dataclass(frozen=True)
class Flag:
    """One file flagged by one check; `detail` is a short human sentence."""

    check: str
    path: Path
    label: str | None
    split: str | None
    detail: str
    score: float | None = None


@dataclass(frozen=True)
class DuplicateGroup:
    """Files that show the same picture: exact copies or near copies."""

    kind: str  # "exact" when every member has the same bytes, else "near"
    paths: list[Path]
    labels: list[str]
    splits: list[str | None]
    similarity: float  # the weakest link that joined the group

    # Cached: a group of 10,000 near copies (generated images on noise) asked these once per
    # member made the audit quadratic (1,188 s of a 100,000-image run went there).
    @functools.cached_property
    def label_conflict(self) -> bool:
        return len(set(self.labels)) > 1

    @functools.cached_property
    def leakage(self) -> bool:
        return len({s for s in self.splits if s is not None}) > 1


@dataclass(frozen=True)
class LabelSuspect:
    path: Path
    given: str
    suggested: str
    quality: float  # cleanlab's label quality, 0 (surely wrong) .. 1
    split: str | None = None


@dataclass(frozen=True)
class Outlier:
    path: Path
    label: str
    score: float  # cleanlab's out-of-distribution score, lower = stranger
    flagged: bool
    split: str | None = None


@dataclass
class AuditResult:
    """Everything one audit found about a data set."""

    root: Path
    classes: list[str]
    class_counts: dict[str, int]
    split_counts: dict[str, dict[str, int]]
    facts: list[ImageFacts]
    unreadable: list[Skipped]
    duplicates: list[DuplicateGroup]
    label_suspects: list[LabelSuspect] = field(default_factory=list)
    outliers: list[Outlier] = field(default_factory=list)  # most outlying first, top ranks
    property_flags: list[Flag] = field(default_factory=list)
    embeddings_checked: bool = False
    seconds: float = 0.0

    @property
    def n_images(self) -> int:
        return sum(self.class_counts.values())

    @property
    def imbalance_ratio(self) -> float:
        counts = [n for n in self.class_counts.values()]
        return max(counts) / max(1, min(counts)) if counts else 1.0

    @property
    def leaking_groups(self) -> list[DuplicateGroup]:
        return [g for g in self.duplicates if g.leakage]

    @property
    def leaked_files(self) -> int:
        """Files whose copy sits in another split: what inflates validation and test."""
        return sum(len(g.paths) for g in self.leaking_groups)

    def flags(self) -> list[Flag]:
        """Every finding as per-file flags, in CHECKS order."""
        flags: list[Flag] = [
            Flag("unreadable", s.path, None, None, s.reason) for s in self.unreadable
        ]
        for g in self.duplicates:
            check = "exact_duplicate" if g.kind == "exact" else "near_duplicate"
            conflict = "label_conflict" if g.kind == "exact" else "near_label_conflict"
            labels = ", ".join(sorted(set(g.labels))) if g.label_conflict else ""
            splits = ", ".join(sorted({s for s in g.splits if s})) if g.leakage else ""
            for path, label, split, other in _members_with_partners(g):
                flags.append(Flag(check, path, label, split, f"copy of {other}", g.similarity))
                if labels:
                    flags.append(Flag(conflict, path, label, split, f"group labels: {labels}"))
                if splits:
                    flags.append(Flag("leakage", path, label, split, f"group spans {splits}"))
        flags += [
            Flag(
                "label_error",
                s.path,
                s.given,
                s.split,
                f"labelled {s.given}, looks like {s.suggested}",
                s.quality,
            )
            for s in self.label_suspects
        ]
        flags += [
            Flag("outlier", o.path, o.label, o.split, f"outlier score {o.score:.3f}", o.score)
            for o in self.outliers
            if o.flagged
        ]
        flags += self.property_flags
        order = list(CHECKS)
        return sorted(flags, key=lambda f: order.index(f.check))

    def counts(self) -> dict[str, int]:
        """Files per check (imbalance counts once when it applies)."""
        counts = Counter(f.check for f in self.flags())
        if self.imbalance_ratio >= IMBALANCE_WARN:
            counts["imbalance"] = 1
        return {check: counts[check] for check in CHECKS if counts[check]}

    def issues_found(self) -> bool:
        """True when any error or warning was found."""
        return any(CHECKS[check][1] != "info" for check in self.counts())

    def blocking_issues(self) -> dict[str, int]:
        """Files per check for the findings that make training or evaluation results wrong
        (severity "error": unreadable files, leakage between splits, identical files with
        different labels): what makes `imgrec audit` exit 3. Warnings never block."""
        return {check: n for check, n in self.counts().items() if CHECKS[check][1] == "error"}

    def verdict(self) -> str:
        """One line on what the findings mean for the results."""
        blocking = self.blocking_issues()
        if blocking:
            what = ", ".join(CHECKS[check][0].lower() for check in blocking)
            return f"error: results would be wrong ({what}); fix these before trusting a score."
        if self.issues_found():
            return "Nothing found makes results wrong; the warnings above are worth a look."
        return "No issues found."

    def summary(self) -> list[str]:
        """One line per finding, for the terminal."""
        lines = [
            f"{self.n_images} images, {len(self.classes)} classes; imbalance ratio "
            f"{self.imbalance_ratio:.1f} ({_counts_text(self.class_counts)})"
        ]
        for check, n in self.counts().items():
            title, severity, advice = CHECKS[check]
            what = "" if check == "imbalance" else f": {n} file{'s' if n != 1 else ''}"
            if check == "leakage":
                what += f" in {len(self.leaking_groups)} groups"
            lines.append(f"{severity}: {title}{what}. {advice}")
        if not self.embeddings_checked:
            lines.append(
                "info: label errors and outliers not checked (no embeddings); "
                "`imgrec audit` checks them."
            )
        if self.issues_found():
            lines.append(self.verdict())
        return lines

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "images": self.n_images,
            "classes": self.classes,
            "class_counts": self.class_counts,
            "split_counts": self.split_counts,
            "imbalance_ratio": round(self.imbalance_ratio, 3),
            "issues_found": self.issues_found(),
            "blocking": self.blocking_issues(),
            "counts": self.counts(),
            "embeddings_checked": self.embeddings_checked,
            "seconds": round(self.seconds, 2),
            "leakage": {"groups": len(self.leaking_groups), "files": self.leaked_files},
            "checks": {
                check: {"title": t, "severity": sev, "advice": adv}
                for check, (t, sev, adv) in CHECKS.items()
            },
            "findings": [
                {
                    "check": f.check,
                    "path": str(f.path),
                    "label": f.label,
                    "split": f.split,
                    "detail": f.detail,
                    "score": None if f.score is None else round(f.score, 5),
                }
                for f in self.flags()
            ],
            "duplicate_groups": [
                {
                    "kind": g.kind,
                    "similarity": round(g.similarity, 4),
                    "label_conflict": g.label_conflict,
                    "leakage": g.leakage,
                    "files": [
                        {"path": str(p), "label": lab, "split": sp}
                        for p, lab, sp in zip(g.paths, g.labels, g.splits, strict=True)
                    ],
                }
                for g in self.duplicates
            ],
            "outlier_ranking": [
                {"path": str(o.path), "label": o.label, "score": round(o.score, 5)}
                for o in self.outliers
            ],
        }


def property_flags(dataset: Dataset, facts: list[ImageFacts | None]) -> list[Flag]:
    """Per-image property checks; grayscale counts only in a mostly-colour set."""
    known = [(s, f) for s, f in zip(dataset.samples, facts, strict=True) if f is not None]
    colour_set = sum(f.grayscale for _, f in known) < len(known) / 2
    flags = []
    for sample, f in known:
        found = _property_findings(f, colour_set)
        flags += [Flag(check, sample.path, sample.label, sample.split, d) for check, d in found]
    return flags


def _property_findings(f: ImageFacts, colour_set: bool) -> list[tuple[str, str]]:
    found = []
    if min(f.width, f.height) < TINY_SIDE:
        found.append(("tiny", f"{f.width}x{f.height} px"))
    if f.width * f.height > HUGE_PIXELS:
        found.append(("huge", f"{f.width}x{f.height} px ({f.width * f.height / 1e6:.0f} MP)"))
    if f.brightness < DARK_BELOW:
        found.append(("dark", f"mean brightness {f.brightness:.0f}/255"))
    if f.brightness > BRIGHT_ABOVE:
        found.append(("bright", f"mean brightness {f.brightness:.0f}/255"))
    if f.blur < BLUR_BELOW:
        found.append(("blurry", f"sharpness {f.blur:.1f}"))
    if f.grayscale and colour_set:
        found.append(("grayscale", "no colour" + (f" (mode {f.mode})" if f.mode != "L" else "")))
    if f.has_alpha:
        found.append(("alpha", f"mode {f.mode}"))
    if f.exif_rotated:
        found.append(("exif_rotated", "EXIF orientation applied"))
    return found


def _members_with_partners(g: DuplicateGroup):
    """Each member with the name of another member, for 'copy of X' details."""
    for i, (path, label, split) in enumerate(zip(g.paths, g.labels, g.splits, strict=True)):
        other = g.paths[1] if i == 0 else g.paths[0]
        yield path, label, split, other.name


def _counts_text(counts: dict[str, int]) -> str:
    shown = list(counts.items())[:6]
    text = ", ".join(f"{name} {n}" for name, n in shown)
    return text + (f", ... ({len(counts) - 6} more)" if len(counts) > 6 else "")
