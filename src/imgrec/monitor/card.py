"""The model card: what a model is, what it is for, how well it works and for whom, what it
cannot do, and how to rebuild it, written for a person who did not train it.

Follows Mitchell et al. (2019), "Model Cards for Model Reporting": model details, intended
use, data, metrics (overall, per class, per group), calibration, limitations, ethical
considerations, reproduction. The text is built once as sections of blocks (paragraphs,
lists, tables, code) and rendered by two Jinja2 templates, Markdown and self-contained HTML,
so both always say the same thing. `imgrec train` writes it for every run; `imgrec card`
rewrites it; the Markdown is also embedded in model.imgrec so the card travels with the model.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jinja2 import Environment, FileSystemLoader

from imgrec.bundle.format import weights_sha256
from imgrec.bundle.model import update_metadata
from imgrec.bundle.run_folder import MODEL_FILE, RunFolder, read_run_folder
from imgrec.errors import ImgrecError
from imgrec.evaluate.groups import gap_sentence
from imgrec.evaluate.intervals import wilson_interval

if TYPE_CHECKING:
    from imgrec.evaluate import EvaluationResult

_TEMPLATES = Path(__file__).parent / "templates"
FEW_TEST_IMAGES = 10  # a class with fewer test images has a recall interval of +-25 points
FEW_TRAIN_IMAGES = 20
DEFAULT_NOTE = (
    "This text is a default written by imgrec, not by the model's owner; the owner can replace "
    'it with imgrec card RUN_FOLDER --intended-use "..." --out-of-scope "...".'
)


@dataclass
class Block:
    """One piece of a section: kind is p (paragraph), list, table or code."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Section:
    title: str
    blocks: list[Block]


@dataclass
class ModelCard:
    title: str
    summary: str
    sections: list[Section]
    generated: str
    figures: dict[str, str] = field(default_factory=dict)  # name -> data URI (HTML only)

    def markdown(self) -> str:
        text = _environment(autoescape=False).get_template("card.md.j2").render(card=self)
        return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"

    def html(self) -> str:
        return _environment(autoescape=True).get_template("card.html.j2").render(card=self)


@dataclass
class CardFiles:
    """Where the card went, and its Markdown (as embedded in the model file)."""

    markdown: Path
    html: Path
    model: Path
    text: str


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    return env


# ---- writing and embedding --------------------------------------------------------------------
def write_card(
    folder: str | Path,
    intended_use: str | None = None,
    out_of_scope: str | None = None,
    out: str | Path | None = None,
    evaluation: EvaluationResult | None = None,
) -> CardFiles:
    """Write model_card.md and model_card.html (into `out`, default the run folder) and embed
    the Markdown in the run's model.imgrec. Owner-written text is kept in the model file, so a
    later regeneration without it keeps it; `evaluation` (the run's own, in memory) saves
    re-predicting the test split when metrics.json has no calibration figures.

    This rewrites the model file; a run that has not saved its model yet writes it once, card
    included, with write_card_for."""
    run = read_run_folder(folder)
    owner = dict(run.metadata.get("model_card_text") or {})
    if intended_use is not None:
        owner["intended_use"] = _text_option(intended_use, "--intended-use")
    if out_of_scope is not None:
        owner["out_of_scope"] = _text_option(out_of_scope, "--out-of-scope")
    card = build_card(run, owner.get("intended_use"), owner.get("out_of_scope"), evaluation)
    files = _save(card, Path(out) if out is not None else run.folder, run.model_path)
    embed_card(run.model_path, files.text, owner)
    return files


def write_card_for(
    folder: str | Path,
    metadata: dict,
    weights_hash: str,
    evaluation: EvaluationResult | None = None,
) -> CardFiles:
    """Write model_card.md and model_card.html for a model not saved yet (see build_card_for);
    the caller then writes the model file once with ``metadata["model_card"] = files.text``."""
    card = build_card_for(folder, metadata, weights_hash, evaluation)
    return _save(card, Path(folder), Path(folder) / MODEL_FILE)


def _save(card: ModelCard, target: Path, model_path: Path) -> CardFiles:
    target.mkdir(parents=True, exist_ok=True)
    markdown = card.markdown()
    md_path, html_path = target / "model_card.md", target / "model_card.html"
    md_path.write_text(markdown, encoding="utf-8")
    html_path.write_text(card.html(), encoding="utf-8")
    return CardFiles(md_path, html_path, model_path, markdown)


def _text_option(text: str, option: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise ImgrecError(f"{option} is empty; write a sentence or leave the option out.")
    return text


def embed_card(model_path: Path, markdown: str, owner_text: dict | None = None) -> None:
    """Put the card into the model file's metadata; the weights stay byte-for-byte the same."""

    def add_card(metadata: dict) -> None:
        metadata["model_card"] = markdown
        if owner_text:
            metadata["model_card_text"] = owner_text

    update_metadata(model_path, add_card)


# ---- content ----------------------------------------------------------------------------------
def build_card(
    run: RunFolder | str | Path,
    intended_use: str | None = None,
    out_of_scope: str | None = None,
    evaluation: EvaluationResult | None = None,
    weights_hash: str | None = None,
) -> ModelCard:
    """The card's content from a run folder (see write_card for the files); `weights_hash`
    defaults to weights_sha256 of the run's model file."""
    if not isinstance(run, RunFolder):
        run = read_run_folder(run)
    facts = _Facts(run, weights_hash or weights_sha256(run.model_path))
    sections = [
        _details(run, facts),
        _intended_use(facts, intended_use),
        _out_of_scope(facts, out_of_scope),
        _data(run, facts),
        _metrics(run, facts),
        _calibration(run, facts, evaluation),
        _limitations(run, facts),
        _ethics(run, facts),
        _reproduce(run, facts),
    ]
    figures = {}
    if run.groups:
        from imgrec.evaluate.html import data_uri, png_bytes
        from imgrec.evaluate.plots import plot_group_accuracy

        figures["group_accuracy"] = data_uri(
            png_bytes(plot_group_accuracy(run.groups)), "image/png"
        )
    return ModelCard(
        title=f"Model card: {facts.model} classifier for {facts.class_text}",
        summary=_summary(facts),
        sections=sections,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        figures=figures,
    )


def build_card_for(
    folder: str | Path,
    metadata: dict,
    weights_hash: str,
    evaluation: EvaluationResult | None = None,
) -> ModelCard:
    """The card of a run whose model file is not written yet, so that the file can be written
    once with the card in it: `metadata` is what the file will carry (bundle.model's
    model_metadata) and `weights_hash` the tensor_data_sha256 of its state dict. Everything
    else comes from the run folder, as for build_card; owner text comes from
    metadata["model_card_text"] (a retrained model keeps its owner's words)."""
    run = read_run_folder(folder, metadata)
    owner = metadata.get("model_card_text") or {}
    return build_card(
        run, owner.get("intended_use"), owner.get("out_of_scope"), evaluation, weights_hash
    )


class _Facts:
    """Numbers several sections need, computed once."""

    def __init__(self, run: RunFolder, weights_hash: str) -> None:
        self.weights_hash = weights_hash
        m, meta = run.metrics, run.metadata
        self.classes = [str(c) for c in m["classes"]]
        self.class_text = (
            _join(self.classes) if len(self.classes) <= 6 else (f"{len(self.classes)} classes")
        )
        self.model = str(meta.get("model", run.config.get("model", "unknown")))
        self.cm = np.asarray(m["confusion_matrix"], dtype=np.int64)
        self.n = int(m["n"])
        self.correct = int(np.trace(self.cm))
        self.accuracy = float(m["accuracy"])
        self.accuracy_ci = wilson_interval(self.correct, self.n)
        self.split = str(meta.get("metrics", {}).get("split", "test"))
        self.source = str(run.config.get("source", meta.get("data", {}).get("source", "unknown")))
        self.train_counts = _train_counts(run)
        self.n_train = sum(self.train_counts.values())
        self.created = str(meta.get("created", "unknown"))


def _summary(f: _Facts) -> str:
    low, high = f.accuracy_ci
    unseen = "it had not trained on" + (
        "" if f.split == "test" else " (though they chose its best epoch)"
    )
    return (
        f"This model sorts a photo into one of {len(f.classes)} classes ({f.class_text}). "
        f"imgrec trained it ({f.model}) on {f.n_train} labelled images. On {f.n} {f.split} "
        f"images {unseen}, it was right {f.accuracy:.1%} of the time ({f.correct} of {f.n}); "
        f"the true accuracy is likely (95%) between {low:.1%} and {high:.1%}. "
        f"Version: created {f.created}."
    )


def _details(run: RunFolder, f: _Facts) -> Section:
    from imgrec.models.families import get_family

    meta, config = run.metadata, run.config
    family = get_family(f.model)
    p = meta.get("preprocessing", {})
    versions = meta.get("versions", {})
    best = meta.get("metrics", {}).get("best_epoch") or meta.get("best_epoch") or {}
    temperature = float(meta.get("calibration", {}).get("temperature", 1.0))
    rows = [
        ["Model family", f"{family.name}: {family.summary}"],
        ["Architecture", str(meta.get("timm_name") or f.model)],
        ["Starting weights", str(config.get("weights", "unknown"))],
        ["Classes", f"{len(f.classes)}: {', '.join(f.classes)}"],
        [
            "Input",
            f"{p.get('input_size', '?')} px square (resized to {p.get('resize_size', '?')} "
            f"px first), mean {p.get('mean')}, std {p.get('std')}",
        ],
        ["Version", f"created {f.created}"],
        ["Weights SHA-256", f.weights_hash],
        ["Best epoch", _epoch_text(best)],
        [
            "Temperature",
            f"{temperature:g}"
            + (
                " (no calibration applied)"
                if temperature == 1
                else " (probabilities are calibrated)"
            ),
        ],
        ["Software", ", ".join(f"{k} {v}" for k, v in versions.items()) or "unknown"],
    ]
    settings = [[k, _value(v)] for k, v in config.items() if k != "source"]
    return Section(
        "Model details",
        [
            Block(
                "p",
                text=(
                    f"Built with imgrec {versions.get('imgrec', '?')} and PyTorch "
                    f"{versions.get('torch', '?')} from the run folder {run.folder}. The "
                    "version is the date the model file was written. The weights hash covers "
                    "the model's numbers only, so it stays the same when this card is embedded "
                    "in the file; compare it to check that two copies are the same model."
                ),
            ),
            Block("table", header=["Field", "Value"], rows=rows),
            *_phase_blocks(meta.get("phases") or run.metrics.get("phases")),
            Block("p", text="Training settings (config.json):"),
            Block("table", header=["Setting", "Value"], rows=settings),
        ],
    )


def _phase_blocks(phases: dict | None) -> list[Block]:
    """The time each training phase took and what it added (evaluate/phases.py)."""
    from imgrec.evaluate.phases import phase_rows

    rows = [list(row) for row in phase_rows(phases)]
    if not rows:
        return []
    return [
        Block(
            "p", text="Training phases: what each took, and what it added on the validation split:"
        ),
        Block("table", header=["Phase", "Time", "Added"], rows=rows),
    ]


def _intended_use(f: _Facts, text: str | None) -> Section:
    if text:
        return Section("Intended use", [Block("p", text=text)])
    return Section(
        "Intended use",
        [
            Block(
                "p",
                text=(
                    f"Sorting photos like the ones it was trained on into {f.class_text}, to "
                    "save a person time: for example pre-sorting a photo collection, "
                    "prototyping, or an internal tool where a person looks at the results that "
                    "matter and a mistake is cheap to notice and fix."
                ),
            ),
            Block("p", text=DEFAULT_NOTE),
        ],
    )


def _out_of_scope(f: _Facts, text: str | None) -> Section:
    if text:
        return Section("Out-of-scope uses", [Block("p", text=text)])
    return Section(
        "Out-of-scope uses",
        [
            Block(
                "list",
                items=[
                    "Photos unlike the training photos (other cameras, places, lighting or "
                    "subjects). The model always answers with one of its "
                    f"{len(f.classes)} classes, even for a photo that shows none of them.",
                    "Decisions with serious consequences for people (health, money, work, "
                    "housing, legal matters, safety) without a qualified person reviewing "
                    "every case.",
                    "Identifying, tracking or watching people, or guessing sensitive traits "
                    "(such as ethnicity, health, religion or sexuality) from images.",
                    "Treating its confidence as an exact probability without checking its "
                    "calibration (see Calibration).",
                ],
            ),
            Block("p", text=DEFAULT_NOTE),
        ],
    )


def _data(run: RunFolder, f: _Facts) -> Section:
    data = run.metadata.get("data", {})
    fingerprint = str(data.get("fingerprint", "unknown"))
    blocks = [
        Block(
            "p",
            text=(
                f"Source: {f.source}. The training images have the fingerprint "
                f"{fingerprint} (SHA-256 over every file's path, label and content): if any "
                "image or label changes, so does the fingerprint."
            ),
        )
    ]
    if run.split_counts:
        splits = [s for s in ("train", "val", "test") if s in run.split_counts]
        rows = [[c, *(str(run.split_counts[s].get(c, 0)) for s in splits)] for c in f.classes]
        rows.append(["all", *(str(sum(run.split_counts[s].values())) for s in splits)])
        blocks += [
            Block(
                "p",
                text=(
                    "Images per class and split (split.csv). The model learned from train and "
                    "val chose the best epoch"
                    + (
                        ", and test was only used for the metrics below."
                        if "test" in splits
                        else "."
                    )
                ),
            ),
            Block("table", header=["Class", *splits], rows=rows),
        ]
    counts = list(f.train_counts.values())
    if counts and min(counts) > 0:
        ratio = max(counts) / min(counts)
        blocks.append(
            Block(
                "p",
                text=(
                    f"Balance: the largest class has {ratio:.1f} times as many training "
                    "images as the smallest"
                    + (
                        ", so balanced accuracy and per-class recall matter more than accuracy."
                        if ratio >= 1.5
                        else "; the classes are about even."
                    )
                ),
            )
        )
    blocks.append(_audit_block(run))
    return Section("Data", blocks)


def _audit_block(run: RunFolder) -> Block:
    a = run.audit
    if a is None:
        return Block(
            "p",
            text=(
                "No data audit was run for this training (it was switched off); run imgrec audit "
                "on the data to check for broken files, duplicates, leakage and label errors."
            ),
        )
    counts = a.get("counts", {})
    leak = a.get("leakage", {})
    items = [
        f"Unreadable files: {counts.get('unreadable', 0)} found by the audit; {run.skipped} "
        "listed in skipped.csv (left out of training and evaluation).",
        f"Exact duplicates: {counts.get('exact_duplicate', 0)} files; near duplicates: "
        f"{counts.get('near_duplicate', 0)} files.",
        f"Leakage (copies of one photo in different splits, which inflates the test score): "
        f"{leak.get('files', 0)} files in {leak.get('groups', 0)} groups in the data as given; "
        f"{a.get('cross_split_duplicates', 0)} duplicate groups span splits in this run.",
        f"Duplicates carrying different labels: {counts.get('label_conflict', 0)} files.",
    ]
    if a.get("embeddings_checked"):
        items += [
            f"Suspected label errors: {counts.get('label_error', 0)} files whose label "
            "disagrees confidently with what cross-validated predictions see.",
            f"Outliers: {counts.get('outlier', 0)} files unlike the rest of the data.",
        ]
    else:
        items.append(
            "Suspected label errors and outliers were not checked (the quick audit computes no "
            "embeddings); run imgrec audit on the data for them."
        )
    images = ", ".join(
        f"{n} {check}"
        for check, n in counts.items()
        if check in ("tiny", "dark", "bright", "blurry", "grayscale", "huge")
    )
    if images:
        items.append(f"Unusual images: {images}.")
    return Block("list", items=items)


def _metrics(run: RunFolder, f: _Facts) -> Section:
    m = run.metrics
    where = (
        f"the {f.split} split: {f.n} images the model never trained on and that did not choose "
        "its best epoch"
        if f.split == "test"
        else f"the {f.split} split ({f.n} images), which also chose the best epoch, so these "
        "numbers are somewhat optimistic (there was no test split)"
    )
    low, high = f.accuracy_ci
    rows = [
        [
            "Accuracy",
            f"{f.accuracy:.1%}",
            f"{low:.1%} to {high:.1%}",
            f"{f.correct} of {f.n} photos got the right class",
        ],
        [
            "Balanced accuracy",
            f"{m['balanced_accuracy']:.1%}",
            "",
            "the average of the per-class recalls: every class counts the same",
        ],
    ]
    if "macro_f1" in m:
        rows.append(
            [
                "Macro F1",
                f"{m['macro_f1']:.3f}",
                "",
                "precision and recall combined, averaged over classes (1 is perfect)",
            ]
        )
    if "log_loss" in m:
        rows.append(
            [
                "Log loss",
                f"{m['log_loss']:.3f}",
                "",
                "how much probability went to the right class (lower is better)",
            ]
        )
    blocks = [
        Block("p", text=f"Measured on {where}. Intervals are 95% Wilson intervals."),
        Block("table", header=["Metric", "Value", "95% interval", "Meaning"], rows=rows),
        Block(
            "p",
            text=(
                "Per class: recall is the share of a class's photos the model finds; precision is "
                "the share of the model's answers for a class that are right."
            ),
        ),
        Block(
            "table",
            header=[
                "Class",
                f"{f.split.capitalize()} images",
                "Recall",
                "Precision",
                "Training images",
            ],
            rows=[_class_row(f, i, c) for i, c in enumerate(f.classes)],
        ),
    ]
    return Section("Metrics", blocks + _group_blocks(run))


def _class_row(f: _Facts, i: int, name: str) -> list[str]:
    support, predicted, hits = int(f.cm[i].sum()), int(f.cm[:, i].sum()), int(f.cm[i, i])
    return [
        name,
        str(support),
        _rate(hits, support),
        _rate(hits, predicted),
        str(f.train_counts.get(name, "?")),
    ]


def _rate(k: int, n: int) -> str:
    ci = wilson_interval(k, n)
    if ci is None:
        return "not measurable (no images)"
    return f"{k / n:.1%} ({k}/{n}; {ci[0]:.0%} to {ci[1]:.0%})"


def _group_blocks(run: RunFolder) -> list[Block]:
    g = run.groups
    if not g:
        return [
            Block(
                "p",
                text=(
                    "Per group: not evaluated. Nothing here says whether the model works "
                    "equally well for different cameras, places or groups of people; see "
                    "Ethical considerations."
                ),
            )
        ]
    blocks = [
        Block(
            "p",
            text=(
                f"Per group, on {g.get('data', 'the evaluation data')} (from "
                f"{run.groups_from}): accuracy with {g['confidence']:.0%} bootstrap intervals "
                f"({g['resamples']} resamples). Groups under {g['min_group_size']} images are "
                "too small to judge."
            ),
        )
    ]
    for column, result in g["columns"].items():
        rows = []
        for name, r in result["groups"].items():
            low, high = r["accuracy_ci"]
            note = "too few to judge" if r["n"] < g["min_group_size"] else ""
            rows.append(
                [
                    name,
                    str(r["n"]),
                    f"{r['accuracy']:.1%} ({low:.1%} to {high:.1%})",
                    f"{r['balanced_accuracy']:.1%}",
                    f"{r['ece']:.3f}",
                    note,
                ]
            )
        blocks.append(Block("p", text=f"By {column}:"))
        blocks.append(
            Block(
                "table",
                header=[
                    column,
                    "Images",
                    "Accuracy (95% interval)",
                    "Balanced accuracy",
                    "ECE",
                    "Note",
                ],
                rows=rows,
            )
        )
        gaps = (
            [gap_sentence("accuracy", result["gaps"]["accuracy"])]
            if result["gaps"]["accuracy"]
            else []
        )
        gaps += [
            gap_sentence(f"recall of {cls}", gap)
            for cls, gap in result["gaps"]["recall"].items()
            if gap
        ]
        if gaps:
            blocks.append(Block("list", items=[s[0].upper() + s[1:] for s in gaps]))
    if g.get("warnings"):
        blocks.append(Block("p", text="Warnings from the per-group evaluation:"))
        blocks.append(Block("list", items=list(g["warnings"])))
    return blocks


def _calibration(run: RunFolder, f: _Facts, evaluation: EvaluationResult | None) -> Section:
    given = run.metrics.get("calibration") or {}
    temperature = float(
        given.get("temperature", run.metadata.get("calibration", {}).get("temperature", 1.0))
    )
    ece, origin = given.get("ece"), "metrics.json"
    if ece is None:
        ece, origin = _ece_from_predictions(run, f, evaluation)
    blocks = []
    if isinstance(ece, int | float):
        blocks.append(
            Block(
                "p",
                text=(
                    f"Expected calibration error (ECE) on the {f.split} split: {ece:.3f} "
                    f"(from {origin}). On average, the model's confidence differs from how "
                    f"often it is actually right by {100 * ece:.1f} percentage points; 0 would "
                    "be perfectly honest confidence. With few images this number is itself "
                    "rough."
                ),
            )
        )
    else:
        blocks.append(Block("p", text=f"Expected calibration error: not available ({origin})."))
    if temperature == 1.0:
        blocks.append(
            Block(
                "p",
                text=(
                    "No temperature scaling was applied (temperature 1), so the confidence is "
                    "the model's raw output; do not read it as an exact probability, "
                    "and calibrate the model on held-out data before acting on confidence "
                    "alone."
                ),
            )
        )
    else:
        blocks.append(
            Block(
                "p",
                text=(
                    f"The logits are divided by a temperature of {temperature:.3g} (fitted on "
                    "held-out data) to make the confidence more honest."
                ),
            )
        )
    return Section("Calibration", blocks)


def _ece_from_predictions(
    run: RunFolder, f: _Facts, evaluation: EvaluationResult | None
) -> tuple[float | None, str]:
    """ECE of the run's own predictions: in memory after training, else the evaluated split
    predicted again (the images must still be where the run found them)."""
    from imgrec.evaluate.calibration import expected_calibration_error

    if evaluation is not None:
        return expected_calibration_error(evaluation.probs, evaluation.targets), "the predictions"
    try:
        from imgrec.bundle.model import load_model
        from imgrec.data.dataset import load_dataset
        from imgrec.data.split import read_split_file

        dataset = read_split_file(run.folder / "split.csv", load_dataset(f.source)).subset(f.split)
        predictor = load_model(run.model_path).predictor("torch")
        paths, probs, _ = predictor.predict_proba(dataset.paths)
    except ImgrecError as exc:
        return None, f"the {f.split} images could not be predicted again: {exc}"
    label = {s.path: f.classes.index(s.label) for s in dataset.samples}
    targets = np.array([label[p] for p in paths], dtype=np.int64)
    if len(targets) == 0:
        return None, f"none of the {f.split} images could be read"
    return expected_calibration_error(probs, targets), "the predictions, recomputed"


def _limitations(run: RunFolder, f: _Facts) -> Section:
    low, high = f.accuracy_ci
    width = 100 * (high - low)
    items = [
        f"The {f.split} split has {f.n} images, so the accuracy of {f.accuracy:.1%} is only "
        f"known to lie between {low:.1%} and {high:.1%} (a range of {width:.0f} percentage "
        "points)" + ("; test on more images before relying on it." if width > 10 else "."),
    ]
    few_test = [c for i, c in enumerate(f.classes) if f.cm[i].sum() < FEW_TEST_IMAGES]
    if few_test:
        items.append(
            f"{_classes_have(few_test)} fewer than {FEW_TEST_IMAGES} {f.split} images, so "
            "the recall there is a rough guess."
        )
    few_train = [c for c, n in f.train_counts.items() if n < FEW_TRAIN_IMAGES]
    if few_train:
        items.append(
            f"{_classes_have(few_train)} fewer than {FEW_TRAIN_IMAGES} training images; "
            f"expect more mistakes on {'it' if len(few_train) == 1 else 'them'}."
        )
    items += [
        f"The model knows only {f.class_text}. Shown anything else, it still picks one of "
        "them, often with high confidence.",
        f"It learned from {f.source} only. Other cameras, lenses, resolutions, lighting, "
        "seasons, places or ways of framing the subject can lower its accuracy without any "
        "warning; check it on photos from the place where it will be used.",
        "The metrics assume the labels are right; label errors in the test split make the "
        "numbers wrong in either direction.",
    ]
    if run.audit and run.audit.get("cross_split_duplicates"):
        items.append("Some duplicate photos span splits, which inflates the test score; see Data.")
    return Section("Limitations", [Block("list", items=items)])


def _ethics(run: RunFolder, f: _Facts) -> Section:
    items = [
        "People in photos: if the images show people, they should have agreed to being "
        "photographed and to this use; remove images of people who did not, and do not train "
        "on images collected without a legal basis.",
        "Privacy: a model can, in rare cases, reveal details of its training images. Share "
        "this model only as widely as you may share the training photos. imgrec keeps all "
        "data on this machine.",
    ]
    g = run.groups
    if g:
        items.append(
            f"Groups evaluated: {_join(list(g['columns']))}. Groups that were not in the "
            "evaluation data, or had too few images, are not covered by these results."
        )
    else:
        unevaluated = (
            f" The training CSV has columns {_join(run.extra_columns)} that could be used."
            if run.extra_columns
            else ""
        )
        items.append(
            "Groups not evaluated: no per-group evaluation was run, so it is unknown whether "
            "the model works worse for some cameras, places or groups of people. Add a column "
            "per attribute to a CSV of labelled test images and run imgrec evaluate MODEL "
            f"DATA.csv --group-by COLUMN, then imgrec card {run.folder}." + unevaluated
        )
    items.append(
        "Do not deploy where a wrong answer harms people unless every decision is reviewed "
        "by a person; see docs/responsible-use.md."
    )
    return Section("Ethical considerations", [Block("list", items=items)])


def _reproduce(run: RunFolder, f: _Facts) -> Section:
    return Section(
        "How to reproduce",
        [
            Block(
                "p",
                text=(
                    "With the same data (its fingerprint must match) and the split this run used, "
                    "this command trains the model again with the exact settings from config.json:"
                ),
            ),
            Block("code", text=reproduce_command(run.config, run.folder)),
            Block(
                "p",
                text=(
                    "Results match closely but not always bit for bit: thread scheduling and "
                    "library versions change the last digits. The versions used are listed in "
                    "Model details."
                ),
            ),
        ],
    )


def reproduce_command(config: dict, folder: Path) -> str:
    """`imgrec train` with every setting of config.json spelled out and this run's split."""
    from imgrec.config import TrainConfig, option_for

    flags = {f: option_for(f) for f in TrainConfig().to_dict() if f != "head" and option_for(f)}
    defaults = TrainConfig().to_dict()
    # --epochs turns the fine-tuning plan off (auto_finetune), so a planned run leaves it out:
    # its epochs are the family's own upper bound
    auto = config.get("auto_finetune") is True
    if auto:
        del flags["epochs"]
        defaults["epochs"] = _family_epochs(str(config.get("model", defaults["model"])))

    parts = [
        "imgrec",
        "train",
        str(config.get("source", "DATA")),
        "--split-file",
        str(Path(folder) / "split.csv"),
        "--out",
        f"{folder}-again",
    ]
    for key, flag in flags.items():
        value = config.get(key)
        if value is not None:
            parts += [flag, _value(value)]
    if "head" in config:
        parts.append("--head" if config["head"] else "--no-head")
    command = " ".join(shlex.quote(p) for p in parts)
    handled = ("head", "source", "auto_finetune")  # auto_finetune: by --epochs, above
    other = [
        f"{k}={_value(v)}"
        for k, v in config.items()
        if k not in flags and k not in handled and v != defaults.get(k, v)
    ]
    if auto and config.get("epochs") != defaults["epochs"]:
        other.append("auto_finetune=True")
    if other:
        command += (
            f"\n# also set in config.json, with no command-line flag: {', '.join(other)}"
            " (pass them to ImageClassifier in Python)"
        )
    return command


# ---- small helpers ----------------------------------------------------------------------------
def _family_epochs(model: str) -> int:
    """The epochs `imgrec train --model MODEL` starts from when --epochs is not given."""
    from imgrec.config import TrainConfig
    from imgrec.models.families import get_family

    return int(get_family(model).defaults.get("epochs", TrainConfig.epochs))


def _train_counts(run: RunFolder) -> dict[str, int]:
    if run.split_counts and "train" in run.split_counts:
        return {c: run.split_counts["train"].get(c, 0) for c in run.metrics["classes"]}
    return dict(run.metadata.get("data", {}).get("class_counts", {}))


def _epoch_text(best: dict) -> str:
    if not best:
        return "not recorded"
    return (
        f"{best.get('phase')} epoch {best.get('epoch')} (validation accuracy "
        f"{float(best.get('val_acc', 0)):.1%})"
    )


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "none" if v is None else str(v)


def _classes_have(names: list[str]) -> str:
    if len(names) == 1:
        return f"The class {names[0]} has"
    return f"The classes {_join(names)} have"


def _join(names: list[str]) -> str:
    names = [str(n) for n in names]
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + f" and {names[-1]}"
