"""`imgrec` command line: a thin Typer layer over the Python API."""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from imgrec.errors import ImgrecError
from imgrec.train.config import TrainConfig

app = typer.Typer(
    help="imgrec: from a folder of labelled photos to an evaluated, deployable image classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
out = Console(soft_wrap=True)  # long paths stay on one line, also when piped
err = Console(stderr=True, soft_wrap=True)

SAMPLE = Path(__file__).parent / "sample" / "hymenoptera"


class Augment(StrEnum):
    none = "none"
    light = "light"
    default = "default"
    strong = "strong"


class Optimizer(StrEnum):
    adamw = "adamw"
    sgd = "sgd"


class Weights(StrEnum):
    imagenet = "imagenet"
    none = "none"


class Mix(StrEnum):
    none = "none"
    mixup = "mixup"
    cutmix = "cutmix"
    both = "both"


class Balance(StrEnum):
    none = "none"
    weights = "weights"
    sampler = "sampler"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


class EngineChoice(StrEnum):
    auto = "auto"
    onnx = "onnx"
    torch = "torch"


# Options several commands share, declared once.
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
SplitRatios = Annotated[
    str, typer.Option(help="Train/val/test percentages when the data has no splits.")
]


def _value(choice: StrEnum | None) -> str | None:
    return None if choice is None else choice.value


def _float(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{option} takes a number or 'auto'.") from None


def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(p) for p in text.replace(",", "/").split("/")]
    except ValueError:
        parts = []
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise typer.BadParameter("use TRAIN/VAL/TEST percentages, e.g. 70/15/15 or 80/10/10.")
    total = sum(parts)
    return tuple(p / total for p in parts)  # type: ignore[return-value]


@app.command(epilog="Example: imgrec train photos/ --epochs 4 --out runs/pets")
def train(
    data: Annotated[
        Path | None,
        typer.Argument(
            help="Folder per class, folder with train/val/test folders, or CSV path,label[,split]."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default runs/train-N).")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="A family (svm-hog, rf-hog, tree-hog, svm-embed, logreg-embed, mlp-embed, "
            "cnn-scratch; `imgrec models` lists them) or a backbone: efficientnet_lite0 "
            "(offline) or any timm name. Each family starts from its own settings; the "
            "options below override them."
        ),
    ] = "efficientnet_lite0",
    weights: Annotated[
        Weights | None, typer.Option(help="Start from ImageNet weights or from scratch.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=f"Max fine-tuning epochs (phase 2); 0 = head only. [default: {TrainConfig.epochs}]"
        ),
    ] = None,
    head: Annotated[
        bool | None,
        typer.Option(help="Phase 1: fit the head on frozen features first. [default: head]"),
    ] = None,
    lr: Annotated[
        str | None,
        typer.Option(
            help="Head learning rate in fine-tuning, or 'auto' for a range test first "
            f"(see imgrec lr-find). [default: {TrainConfig.lr}]"
        ),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Input size in pixels (default: the backbone's own).")
    ] = None,
    backbone_lr_mult: Annotated[
        float | None,
        typer.Option(help=f"Backbone LR = lr x this. [default: {TrainConfig.backbone_lr_mult}]"),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Images per step. [default: {TrainConfig.batch_size}]")
    ] = None,
    augment: Annotated[
        Augment | None, typer.Option(help="Training augmentation preset. [default: default]")
    ] = None,
    mix: Annotated[
        Mix | None,
        typer.Option(
            help="MixUp/CutMix on fine-tuning batches; off by default: on small datasets it "
            "slows convergence within a short schedule."
        ),
    ] = None,
    balance: Annotated[
        Balance | None,
        typer.Option(
            help="For imbalanced classes: inverse-frequency loss weights, or class-balanced "
            "batches (sampler)."
        ),
    ] = None,
    optimizer: Annotated[
        Optimizer | None, typer.Option(help="AdamW or SGD with momentum. [default: adamw]")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help=f"Weight decay. [default: {TrainConfig.weight_decay}]")
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(help=f"Dropout before the classifier. [default: {TrainConfig.dropout}]"),
    ] = None,
    label_smoothing: Annotated[
        float | None,
        typer.Option(help=f"Label smoothing. [default: {TrainConfig.label_smoothing}]"),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help=f"Early-stopping patience in epochs. [default: {TrainConfig.patience}]"),
    ] = None,
    split: SplitRatios = "70/15/15",
    split_file: Annotated[
        Path | None, typer.Option(help="Reuse a split.csv from an earlier run.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (split, init, order). [default: 0]")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader workers (default: cores - 1).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run folder.")] = None,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Replace an existing run folder.")
    ] = False,
    audit: Annotated[
        bool,
        typer.Option(
            help="Quick data audit first (unreadable files, balance, duplicates, leakage); "
            "a fresh split then keeps duplicates in one split."
        ),
    ] = True,
    quiet: Quiet = False,
) -> None:
    """Train a classifier: transfer learning from ImageNet, evaluated, saved as model.imgrec."""
    if resume is None and data is None:
        raise typer.BadParameter("give the DATA to train on (or --resume RUN_FOLDER).")
    ratios = parse_ratios(split)
    from imgrec.train import TrainingInterrupted
    from imgrec.workflow import next_run_folder, train_run

    folder = resume or out_dir or next_run_folder()
    config = TrainConfig.for_model(
        model,
        weights=_value(weights),
        augment=_value(augment),
        mix=_value(mix),
        balance=_value(balance),
        optimizer=_value(optimizer),
        lr=None if lr == "auto" else _float(lr, "--lr"),
        image_size=image_size,
        backbone_lr_mult=backbone_lr_mult,
        head=head,
        epochs=epochs,
        patience=patience,
        weight_decay=weight_decay,
        dropout=dropout,
        label_smoothing=label_smoothing,
        batch_size=batch_size,
        seed=seed,
        workers=workers,
    )
    try:
        run = train_run(
            data,
            folder,
            config,
            ratios,
            split_file,
            resume=resume is not None,
            exist_ok=exist_ok,
            progress=not quiet,
            audit=audit,
            on_audit=print_audit_summary,
            lr_auto=lr == "auto",
            on_lr=lambda value: err.print(f"learning rate from the range test: {value:.3g}"),
        )
    except (TrainingInterrupted, KeyboardInterrupt):
        err.print(
            f"[yellow]interrupted[/]; finished epochs are kept. Continue with: "
            f"imgrec train --resume {folder}"
        )
        raise typer.Exit(130) from None
    m = run.evaluation.metrics
    out.print(
        f"[bold green]done[/] {run.evaluated_on} accuracy {m['accuracy']:.2%}, "
        f"macro-F1 {m['macro_f1']:.3f} on {m['n']} images"
    )
    out.print(f"model:  {run.model_path}\nreport: {run.report_path}")


@app.command(epilog="Example: imgrec compare photos/ --budget 20m --out runs/compare")
def compare(
    data: Annotated[Path, typer.Argument(help="Labelled photos: class folders, splits or CSV.")],
    budget: Annotated[
        str, typer.Option(help="Time for the whole comparison, e.g. 20m, 1h, 90s.")
    ] = "20m",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder (default runs/compare-N).")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated families to compare (default: the leaderboard set)."),
    ] = None,
    split: SplitRatios = "70/15/15",
    split_file: Annotated[
        Path | None, typer.Option(help="Reuse a split.csv from an earlier run.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Replace an existing folder.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Train every model family on the same split within a time budget and rank them.

    Writes leaderboard.csv/.json/.png/.html and keeps the winner as best.imgrec.
    """
    from imgrec.compare import compare as run_compare
    from imgrec.compare import parse_duration
    from imgrec.models.families import LEADERBOARD
    from imgrec.workflow import next_run_folder

    seconds = parse_duration(budget)
    names = [n.strip() for n in models.split(",") if n.strip()] if models else list(LEADERBOARD)
    folder = out_dir or next_run_folder(name="compare")
    board = run_compare(
        data,
        folder,
        names,
        seconds,
        parse_ratios(split),
        split_file,
        seed,
        exist_ok=exist_ok,
        progress=not quiet,
        say=lambda text: err.print(text, markup=False),
    )
    table = Table("#", "family", "accuracy", "macro-F1", "train s", "ms/img", "MB", "note")
    for i, e in enumerate(board.entries, 1):
        if e.status == "ok":
            table.add_row(
                str(i),
                e.family,
                f"{e.accuracy:.2%}",
                f"{e.macro_f1:.3f}",
                f"{e.train_seconds:.0f}",
                f"{e.ms_per_image:.1f}",
                f"{e.size_mb:.1f}",
                e.note,
            )
        else:
            table.add_row("", e.family, e.status, "", "", "", "", e.note)
    out.print(table)
    where = f"scored on the {board.evaluated_on} split ({board.eval_images} images)"
    out.print(f"{where}; took {board.wall_seconds / 60:.1f} min")
    out.print(f"leaderboard: {folder / 'leaderboard.html'}")
    if board.best is None:
        raise ImgrecError("no family finished; see the notes above.")
    out.print(f"best model: {board.best}")


@app.command(epilog="Example: imgrec tune photos/ --trials 20 --budget 30m --out runs/tune")
def tune(
    data: Annotated[
        Path | None, typer.Argument(help="Labelled photos (optional when continuing --out).")
    ] = None,
    trials: Annotated[int, typer.Option(help="Trials in all, counting earlier ones.")] = 30,
    budget: Annotated[
        str | None, typer.Option(help="Stop starting trials after this long, e.g. 1h.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Search folder.")] = Path("runs/tune"),
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL (default sqlite:///OUT/study.db); resumable."),
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated backbones to search over.")
    ] = "efficientnet_lite0",
    epochs: Annotated[
        int | None, typer.Option(help="Max fine-tuning epochs per trial (default: as train).")
    ] = None,
    split: SplitRatios = "70/15/15",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Search learning rate, weight decay, dropout, label smoothing, augmentation, image size
    and backbone with Optuna (TPE + median pruning); run it again to continue a search.

    Writes best.imgrec, report.html, trials.csv, history.png and importance.png.
    """
    if trials < 1:
        raise typer.BadParameter("--trials must be at least 1.")
    try:
        result = _run_tune(
            data, out_dir, trials, budget, storage, models, epochs, split, seed, quiet
        )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted[/]; finished trials are kept in {out_dir}. Continue with the "
            "same command."
        )
        raise typer.Exit(130) from None
    out.print(
        f"[bold green]done[/] {result.finished} trials finished, {result.pruned} pruned, "
        f"{result.failed} failed"
    )
    if result.default_value is not None:
        out.print(f"defaults scored {result.default_value:.4f}; best {result.best_value:.4f}")
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.best_params.items()
    )
    out.print(f"best settings: {params}")
    out.print(
        f"best model: {result.best_model} ({result.evaluated_on} accuracy "
        f"{result.test_accuracy:.2%})"
    )


def _run_tune(data, out_dir, trials, budget, storage, models, epochs, split, seed, quiet):
    from imgrec.compare import parse_duration
    from imgrec.tune import tune as run_tune

    return run_tune(
        data,
        out_dir,
        trials=trials,
        budget=parse_duration(budget) if budget else None,
        storage=storage,
        backbones=[m.strip() for m in models.split(",") if m.strip()],
        epochs=epochs,
        ratios=parse_ratios(split),
        seed=seed,
        progress=not quiet,
        say=lambda text: err.print(text, markup=False),
    )


@app.command("lr-find", epilog="Example: imgrec lr-find photos/ --out lr_find.png")
def lr_find(
    data: Annotated[Path, typer.Argument(help="Labelled photos.")],
    model: Annotated[str, typer.Option(help="Backbone or deep family.")] = "efficientnet_lite0",
    out_file: Annotated[Path, typer.Option("--out", help="Plot to write.")] = Path("lr_find.png"),
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    steps: Annotated[int, typer.Option(help="Training steps in the test.")] = 100,
    quiet: Quiet = False,
) -> None:
    """Learning-rate range test: plot loss against learning rate and suggest one.

    Use the suggestion with `imgrec train --lr VALUE`, or let `--lr auto` run the test.
    """
    from imgrec.api import ImageClassifier, load_dataset
    from imgrec.train.lr_find import find_lr, plot_lr
    from imgrec.workflow import split_data

    clf = ImageClassifier(model, batch_size=batch_size)
    train, val, _ = split_data(load_dataset(data), (0.85, 0.15, 0.0), None, clf.config.seed)
    finding = find_lr(clf, train, val, steps=steps, progress=not quiet)
    plot_lr(finding, out_file)
    out.print(f"suggested learning rate: {finding.suggestion:.3g}")
    out.print(f"plot: {out_file}")


@app.command(epilog="Example: imgrec evaluate runs/train/model.imgrec photos/test --out runs/eval")
def evaluate(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    data: Annotated[Path, typer.Argument(help="Labelled images: folder per class or CSV.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for metrics.json, plots and report.html.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
) -> None:
    """Evaluate a model on labelled data: metrics, confusion matrix, PR curves, HTML report."""
    from imgrec.api import ImageClassifier

    clf = ImageClassifier.load(model_file)
    result = clf.evaluate(data, batch_size=batch_size)
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
    out.print(table)
    if result.skipped:
        err.print(
            f"[yellow]{len(result.skipped)} unreadable file(s) skipped[/] (listed in the report)"
        )
    out.print(f"report: {report}")


@app.command(
    epilog="Example: imgrec predict runs/train/model.imgrec photos/ -f csv -o preds.csv --resume"
)
def predict(
    ctx: typer.Context,
    model_file: Annotated[
        Path, typer.Argument(help="A model.imgrec file, or an .onnx file from `imgrec export`.")
    ],
    inputs: Annotated[
        list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")
    ],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Classes to show per image.")] = 1,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format", "-f", help="Output format; csv and jsonl are written batch by batch."
        ),
    ] = Format.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="With -o and csv/jsonl: skip the images already in the file and append.",
        ),
    ] = False,
    engine: Annotated[
        EngineChoice,
        typer.Option(
            help="onnx: ONNX Runtime (fast on CPU); torch: PyTorch; auto: onnx when installed."
        ),
    ] = EngineChoice.auto,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 32,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log", help="Also record every prediction in this SQLite file (for `imgrec drift`)."
        ),
    ] = None,
) -> None:
    """Predict the class of images; unreadable files are reported and the rest still predicted."""
    from imgrec.data.inputs import expand_inputs
    from imgrec.predicting import BatchPredictor

    streaming = fmt in (Format.csv, Format.jsonl)
    if resume and not (streaming and output):
        raise ImgrecError("--resume needs --output FILE with --format csv or jsonl.")
    paths = expand_inputs(inputs)
    predictor = BatchPredictor.load(
        model_file, engine.value, batch_size, on_fallback=lambda m: err.print(f"warning: {m}")
    )
    if log is not None:
        from imgrec.serve.log import PredictionLog

        predictor.log = PredictionLog(
            log,
            model_file,
            predictor.classes,
            predictor.preprocessing,
            source="predict",
            when_full="wait",
        )
        ctx.call_on_close(predictor.log.close)  # also on errors and Ctrl-C: queued rows are kept

    def report(s) -> None:
        err.print(f"skipped {s.path}: {s.reason}", style="yellow", markup=False)

    if streaming:
        try:
            summary = predictor.predict_to_file(
                paths,
                output or sys.stdout,
                fmt.value,
                top_k,
                resume=resume,
                progress=not quiet and err.is_terminal,
                on_skip=report,
            )
        except KeyboardInterrupt:
            if output:
                where = escape(str(output))
                err.print(f"[yellow]interrupted[/]; the rows so far are in {where}: add --resume")
                raise typer.Exit(130) from None
            raise
        if output:
            note = f", {summary.already_done} already there" if summary.already_done else ""
            out.print(
                f"wrote {summary.predicted} predictions to {output} ({summary.skipped} skipped"
                f"{note}; {summary.images_per_second:.0f} img/s, {summary.engine})",
                highlight=False,
            )
        if summary.predicted == 0 and summary.already_done == 0:
            raise ImgrecError("none of the inputs could be read as an image.")
        return
    done, probs, skipped = predictor.predict_proba(paths)
    from imgrec.api import Prediction
    from imgrec.predicting import top_k_rows

    rows = top_k_rows(predictor.classes, probs, top_k)
    predictions = [Prediction(str(p), c, q) for p, (c, q) in zip(done, rows, strict=True)]
    if output:
        with output.open("w", newline="", encoding="utf-8") as stream:
            _write_predictions(predictions, skipped, fmt, stream)
        out.print(f"wrote {len(predictions)} predictions to {output}")
    else:
        _write_predictions(predictions, skipped, fmt, sys.stdout)
    for s in skipped:
        report(s)
    if not predictions:
        raise ImgrecError("none of the inputs could be read as an image.")


def _write_predictions(predictions, skipped, fmt: Format, stream) -> None:
    """The whole-document formats: a JSON document or a Rich table."""
    k = max((len(p.classes) for p in predictions), default=1)
    if fmt is Format.json:
        document = {
            "predictions": [p.to_dict() for p in predictions],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in skipped],
        }
        json.dump(document, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    else:
        table = Table(Column("image", overflow="fold"), *[f"top {i}" for i in range(1, k + 1)])
        for p in predictions:
            pairs = zip(p.classes, p.probabilities, strict=True)
            table.add_row(p.path, *[f"{c} {q:.1%}" for c, q in pairs])
        Console(file=stream, width=None if stream is sys.stdout else 200).print(table)


@app.command(epilog="Example: imgrec info runs/train/model.imgrec --json")
def info(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print all metadata as JSON.")] = False,
) -> None:
    """Show a model file's classes, backbone, preprocessing, metrics and data fingerprint."""
    from imgrec.bundle.format import read_metadata

    meta = read_metadata(model_file)
    if as_json:
        out.print_json(json.dumps({k: v for k, v in meta.items() if k != "history"}))
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
    for key, value in rows.items():
        table.add_row(key, str(value))
    out.print(table)


def _describe_epoch(row: dict) -> str:
    if not row:
        return "?"
    return (
        f"{row.get('phase')} {row.get('epoch')}: val accuracy {row.get('val_acc', 0):.2%}, "
        f"val loss {row.get('val_loss', 0):.4f}"
    )


@app.command(epilog="Example: imgrec models")
def models(
    pattern: Annotated[
        str | None, typer.Argument(help="timm name pattern, e.g. 'resnet*'.")
    ] = None,
) -> None:
    """List the model families, then backbones for transfer learning (offline ones marked)."""
    from imgrec.models.families import families
    from imgrec.models.registry import SCRATCH_MODEL, list_models

    if pattern is None:
        table = Table("family", "what it is", title="model families (imgrec train --model NAME)")
        for family in families():
            table.add_row(family.name, family.summary)
        out.print(table)
    table = Table("backbone", "input", "offline weights", title="transfer-learning backbones")
    for spec in list_models(pattern):
        weights = "yes" if spec.offline_weights else "download"
        if spec.name == SCRATCH_MODEL:
            weights = "none (--weights none)"
        table.add_row(spec.name, str(spec.input_size), weights)
    out.print(table)


@app.command(epilog="Example: imgrec demo --out runs/demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder, replaced if present.")] = Path(
        "runs/demo"
    ),
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs.")] = 4,
    quiet: Quiet = False,
) -> None:
    """Train on the bundled ants-vs-bees sample (offline, a few minutes on a laptop CPU)."""
    from imgrec.train import TrainConfig
    from imgrec.workflow import train_run

    run = train_run(SAMPLE, out_dir, TrainConfig(epochs=epochs), exist_ok=True, progress=not quiet)
    m = run.evaluation.metrics
    out.print(
        f"[bold green]demo done[/]: {run.evaluated_on} accuracy {m['accuracy']:.2%} on {m['n']} "
        f"images\nmodel:  {run.model_path}\nreport: {run.report_path}\n"
        f"try:    imgrec predict {run.model_path} {SAMPLE / 'val' / 'bees'} --top-k 2"
    )


@app.command(
    "augment-preview",
    epilog="Example: imgrec augment-preview photos/ --augment strong --out grid.png --views 5",
)
def augment_preview(
    data: Annotated[
        Path, typer.Argument(help="Folder per class, train/val/test folders, or a CSV.")
    ],
    augment: Annotated[
        str, typer.Option(help="Preset to show: none, light, default or strong.")
    ] = "default",
    out_file: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path(
        "augment-preview.png"
    ),
    images: Annotated[int, typer.Option(help="Images (rows), spread over the classes.")] = 6,
    views: Annotated[int, typer.Option(help="Augmented views per image.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed (which images, which views).")] = 0,
    model: Annotated[
        str, typer.Option(help="Model whose input size and normalisation to use.")
    ] = "efficientnet_lite0",
) -> None:
    """Show what an augmentation preset does: each image, then views as training sees them."""
    from imgrec.data.augment_preview import preview_augmentations
    from imgrec.models.registry import get_spec

    path = preview_augmentations(data, augment, out_file, images, views, seed, get_spec(model))
    out.print(f"preview: {path}")


def print_audit_summary(result) -> None:
    """The audit's one-line findings, coloured by severity, on stderr (stdout stays data)."""
    style = {"error": "red", "warning": "yellow", "info": "cyan"}
    for line in result.summary():
        severity = line.split(":", 1)[0]
        colour = style.get(severity)
        err.print(f"[{colour}]{line}[/]" if colour else line, highlight=False)


@app.command(
    epilog="Example: imgrec audit photos/ --out runs/audit   (exit code 3 when issues are found)"
)
def audit(
    data: Annotated[
        Path, typer.Argument(help="Folder per class, train/val/test folders, or a CSV.")
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for audit.html and audit.json.")
    ] = None,
    embeddings: Annotated[
        bool,
        typer.Option(help="Backbone embeddings: label errors, outliers, cropped copies."),
    ] = True,
    model: Annotated[str, typer.Option(help="Backbone for the embeddings.")] = "efficientnet_lite0",
    quiet: Quiet = False,
) -> None:
    """Audit labelled photos: broken files, balance, odd images, duplicates and leakage between
    splits, likely label errors and outliers. Exit code 0 when clean, 3 when issues are found."""
    from imgrec.data.audit.report import save_audit
    from imgrec.data.dataset import load_dataset
    from imgrec.workflow import next_run_folder

    dataset = load_dataset(data)
    if not dataset.samples:
        raise ImgrecError(f"no readable images found in {data}.")
    folder = out_dir or next_run_folder(name="audit")
    result = dataset.audit(embeddings=embeddings, model=model, progress=not quiet)
    json_path, html_path = save_audit(result, folder)
    print_audit_summary(result)
    out.print(f"report: {html_path}\njson:   {json_path}")
    if result.issues_found():
        raise typer.Exit(3)


@app.command("split", epilog="Example: imgrec split photos/ --ratios 80/10/10 --out split.csv")
def split_command(
    data: Annotated[Path, typer.Argument(help="Folder per class or a CSV path,label.")],
    ratios: Annotated[
        str, typer.Option(help="Train/val/test percentages: 70/15/15 or 80/10/10, or your own.")
    ] = "70/15/15",
    out_file: Annotated[Path, typer.Option("--out", help="split.csv to write.")] = Path(
        "split.csv"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    embeddings: Annotated[
        bool, typer.Option(help="Also group cropped copies found by backbone embeddings.")
    ] = True,
    quiet: Quiet = False,
) -> None:
    """Stratified split that keeps every group of duplicates inside one split, written as a
    split.csv that `imgrec train --split-file` reuses. Existing split folders are ignored."""
    from imgrec.data.audit.run import audit_dataset, group_keys
    from imgrec.data.dataset import Dataset, load_dataset
    from imgrec.data.split import write_split_file

    parts_ratio = parse_ratios(ratios)
    loaded = load_dataset(data)
    unsplit = [dataclasses.replace(s, split=None) for s in loaded.samples]
    dataset = Dataset(loaded.root, unsplit, loaded.classes, loaded.skipped)
    result = audit_dataset(dataset, embeddings=embeddings, progress=not quiet)
    parts = dataset.split(*parts_ratio, seed=seed, groups=group_keys(dataset, result))
    write_split_file(out_file, dict(zip(("train", "val", "test"), parts, strict=True)))
    where = {s.path: s.split for part in parts for s in part.samples}
    crossing = sum(len({where[p] for p in g.paths}) > 1 for g in result.duplicates)
    table = Table("split", Column("images", justify="right"), *dataset.classes)
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        table.add_row(name, str(len(part)), *(str(n) for n in part.class_counts().values()))
    out.print(table)
    out.print(
        f"{len(result.duplicates)} duplicate groups kept whole; cross-split duplicates: "
        f"{crossing}\nsplit:  {out_file}"
    )


@app.command(
    epilog="Example: IMGREC_KEY=s3cret imgrec serve runs/train/model.imgrec --port 8000 "
    "--api-key-env IMGREC_KEY   (then open http://127.0.0.1:8000/ or /docs)"
)
def serve(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep 127.0.0.1 behind a reverse proxy.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Require header X-API-Key equal to this environment variable's value."),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest request body in MB; larger ones get HTTP 413.", min=0.01)
    ] = 20.0,
    engine: Annotated[
        EngineChoice,
        typer.Option(help="Forward pass: onnx (ONNX Runtime), torch, or auto (onnx if installed)."),
    ] = EngineChoice.auto,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log", help="Record every prediction in this SQLite file (for `imgrec drift`)."
        ),
    ] = None,
    store_images: Annotated[
        Path | None,
        typer.Option(
            help="With --log: also keep each image in this folder, all metadata (EXIF, GPS) "
            "removed. Off by default: uploads are private."
        ),
    ] = None,
    log_max_rows: Annotated[
        int | None, typer.Option(help="With --log: keep only the newest N rows.", min=1)
    ] = None,
    log_max_days: Annotated[
        float | None, typer.Option(help="With --log: delete rows older than D days.", min=0.001)
    ] = None,
) -> None:
    """Serve a model over HTTP: JSON API (/v1/predict), web page (/), docs, /metrics."""
    import os

    from imgrec.serve import ServeSettings, create_app

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise ImgrecError(
                f"--api-key-env {api_key_env}: that environment variable is not set or empty."
            )
    settings = ServeSettings(
        api_key=api_key,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        engine=engine.value,
        log=log,
        store_images=store_images,
        log_max_rows=log_max_rows,
        log_max_days=log_max_days,
    )
    web_app = create_app(model_file, settings)
    import uvicorn

    out.print(f"serving {model_file} on http://{host}:{port}/  (API docs at /docs)")
    if log is not None:
        kept = f"; image copies in {store_images}" if store_images else ""
        out.print(f"logging predictions to {log}{kept}", highlight=False)
    uvicorn.run(web_app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


@app.command(
    "export",
    epilog="Example: imgrec export runs/train/model.imgrec --format onnx --int8 "
    "--calibration photos/val",
)
def export_command(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="onnx (fp32, or int8 with --int8) or torchscript.")
    ] = "onnx",
    int8: Annotated[
        bool, typer.Option("--int8", help="ONNX only: static int8 quantisation (QDQ).")
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="File to write (default: next to the model, model.onnx etc.)."),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Labelled images (folder or CSV) for the parity check and int8 calibration "
            "(default: the bundled ants/bees sample)."
        ),
    ] = None,
) -> None:
    """Export a model to ONNX (fp32 or int8) or TorchScript, then check it matches PyTorch on
    real images; figures go to <out>.parity.json."""
    from imgrec.export import export_model

    result = export_model(
        model_file, fmt, out_file, int8=int8, calibration=calibration, say=out.print
    )
    p = result.parity["parity"]
    line = (
        f"parity on {p['images']} images: max |diff| {p['max_abs_diff']:.2e}, "
        f"top-1 agreement {p['top1_agreement']:.1%}"
    )
    if "export_accuracy" in p:
        line += f", top-1 accuracy {p['reference_accuracy']:.1%} -> {p['export_accuracy']:.1%}"
    out.print(line, highlight=False)
    speed = result.parity.get("speed")
    if speed:
        out.print(
            f"speed (batch {speed['batch']}, {speed['threads']} threads): fp32 "
            f"{speed['fp32_img_per_s']:.1f} img/s, int8 {speed['int8_img_per_s']:.1f} img/s "
            f"({speed['speedup']:.2f}x)",
            highlight=False,
        )
    out.print(f"export: {result.path}\nparity: {result.parity_path}", highlight=False)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1, never a traceback."""
    try:
        app()
    except ImgrecError as exc:
        err.print(f"error: {exc}", style="red", markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
