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

from imgrec.config import TrainConfig
from imgrec.errors import ImgrecError

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
MinConfidence = Annotated[
    float | None,
    typer.Option(
        help="Answer 'unknown' when the top-1 probability is below this (0 <= P < 1); "
        "the evaluation report's coverage curve shows what each value costs."
    ),
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
    time_limit: Annotated[
        str | None,
        typer.Option(
            help="Stop training after this long (e.g. 10m, 1h; the whole fit, head phase "
            "included). The learning-rate schedule follows the clock, so it ends on a low "
            "rate; the best epoch is kept. [default: none, --epochs decides]"
        ),
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
    from imgrec.runs.train import next_run_folder, train_run
    from imgrec.train import TrainingInterrupted

    folder = resume or out_dir or next_run_folder()
    if time_limit is not None:
        from imgrec.config import parse_duration

        time_limit = parse_duration(time_limit)
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
        time_limit=time_limit,
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
    out.print(f"card:   {run.card_path}")


@app.command(
    epilog="Example: imgrec retrain runs/pets --new labelled_batch/ --min-gain 0.01   "
    "(exit code 4 when the old model is kept)"
)
def retrain(
    run_folder: Annotated[
        Path,
        typer.Argument(
            help="Run folder of the model to continue (holds model.imgrec, config.json and "
            "split.csv; its data must still be there)."
        ),
    ],
    new: Annotated[
        Path,
        typer.Option(
            "--new",
            help="Newly labelled images: a folder per class, train/val/test folders or a CSV "
            "path,label[,split]; only classes the model already knows.",
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Run folder of the retrained model (default RUN_FOLDER-retrain)."
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Max fine-tuning epochs (deep models). [default: half the original's]"),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate. [default: a third of the original's]"),
    ] = None,
    min_gain: Annotated[
        float,
        typer.Option(
            help="Replace the old model only if the new one's accuracy on the old test split is "
            "at least the old one's plus this (0.01 = one point; negative tolerates a loss)."
        ),
    ] = 0.0,
    split: SplitRatios = "70/15/15",
    replace: Annotated[
        bool,
        typer.Option(
            help="Put an accepted model in place of RUN_FOLDER/model.imgrec (the replaced one "
            "is kept as previous.imgrec in the new run folder)."
        ),
    ] = True,
    quiet: Quiet = False,
) -> None:
    """Continue training a model on its old split plus newly labelled images; keep it only if it
    is at least as good on the old test split (exit code 4 when the old model stays)."""
    ratios = parse_ratios(split)
    from imgrec.runs.retrain import retrain_run
    from imgrec.train import TrainingInterrupted

    try:
        run = retrain_run(
            run_folder,
            new,
            out_dir,
            epochs=epochs,
            lr=lr,
            min_gain=min_gain,
            ratios=ratios,
            replace_old=replace,
            progress=not quiet,
        )
    except (TrainingInterrupted, KeyboardInterrupt):
        err.print(f"[yellow]interrupted[/]; the model in {run_folder} is untouched.")
        raise typer.Exit(130) from None
    out.print(
        f"run:        {run.folder}\ncomparison: {run.folder / 'retrain.json'}", highlight=False
    )
    if not run.accepted:
        err.print(run.message, markup=False, highlight=False)
        raise typer.Exit(4)
    where = f"replaced {run.old_model}" if run.replaced else f"model: {run.model_path}"
    out.print(f"[bold green]done[/] {escape(run.message)} {escape(where)}")


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
    from imgrec.config import parse_duration
    from imgrec.models.families import LEADERBOARD
    from imgrec.runs.compare import compare as run_compare
    from imgrec.runs.train import next_run_folder

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
    from imgrec.config import parse_duration
    from imgrec.runs.tune import tune as run_tune

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
    from imgrec.runs.train import split_data
    from imgrec.train.lr_find import find_lr, plot_lr

    clf = ImageClassifier(model, batch_size=batch_size)
    train, val, _ = split_data(load_dataset(data), (0.85, 0.15, 0.0), None, clf.config.seed)
    finding = find_lr(clf, train, val, steps=steps, progress=not quiet)
    plot_lr(finding, out_file)
    out.print(f"suggested learning rate: {finding.suggestion:.3g}")
    out.print(f"plot: {out_file}")


@app.command(
    epilog="Example: imgrec evaluate runs/train/model.imgrec photos/test --out runs/eval   or, "
    "per group: imgrec evaluate runs/train/model.imgrec photos.csv --group-by camera,site"
)
def evaluate(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    data: Annotated[Path, typer.Argument(help="Labelled images: folder per class or CSV.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for metrics.json, plots and report.html.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated extra CSV columns (e.g. camera,site): metrics per group with "
            "95% bootstrap intervals and the gaps between groups."
        ),
    ] = None,
) -> None:
    """Evaluate a model on labelled data: metrics, confusion matrix, PR curves, HTML report."""
    from imgrec.api import ImageClassifier

    clf = ImageClassifier.load(model_file)
    columns = None if group_by is None else group_by.split(",")
    result = clf.evaluate(data, batch_size=batch_size, group_by=columns)
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
    out.print(f"report: {report}")


def _print_groups(groups: dict) -> None:
    """Per-group accuracy with intervals and the gaps on stdout; small-group warnings on stderr."""
    from imgrec.evaluate.groups import summary_lines

    out.print("per group (accuracy [95% interval]):", highlight=False)
    for line in summary_lines(groups):
        out.print(line, markup=False, highlight=False)
    for warning in groups["warnings"]:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)


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
    min_confidence: MinConfidence = None,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log", help="Also record every prediction in this SQLite file (for `imgrec drift`)."
        ),
    ] = None,
) -> None:
    """Predict the class of images; unreadable files are reported and the rest still predicted."""
    from imgrec.bundle.model import open_predictor
    from imgrec.data.inputs import expand_inputs
    from imgrec.infer.predict import check_min_confidence

    check_min_confidence(min_confidence)
    streaming = fmt in (Format.csv, Format.jsonl)
    if resume and not (streaming and output):
        raise ImgrecError("--resume needs --output FILE with --format csv or jsonl.")
    paths = expand_inputs(inputs)
    predictor = open_predictor(
        model_file, engine.value, batch_size, on_fallback=lambda m: err.print(f"warning: {m}")
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
                min_confidence=min_confidence,
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
    done, probs, skipped = predictor.predict_proba(paths, min_confidence)
    from imgrec.api import Prediction
    from imgrec.infer.predict import top_k_rows

    rows = top_k_rows(predictor.classes, probs, top_k)
    predictions = [Prediction(str(p), c, q) for p, (c, q) in zip(done, rows, strict=True)]
    if output:
        with output.open("w", newline="", encoding="utf-8") as stream:
            _write_predictions(predictions, skipped, fmt, stream, min_confidence)
        out.print(f"wrote {len(predictions)} predictions to {output}")
    else:
        _write_predictions(predictions, skipped, fmt, sys.stdout, min_confidence)
    for s in skipped:
        report(s)
    if not predictions:
        raise ImgrecError("none of the inputs could be read as an image.")


def _write_predictions(predictions, skipped, fmt: Format, stream, min_confidence=None) -> None:
    """The whole-document formats: a JSON document or a Rich table; with `min_confidence`,
    each prediction also gets its label (the top class, or unknown)."""
    from imgrec.infer.predict import answer_label

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
        json.dump(document, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
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
                p.path, *([label(p)] if labelled else []), *[f"{c} {q:.1%}" for c, q in pairs]
            )
        Console(file=stream, width=None if stream is sys.stdout else 200).print(table)


@app.command(epilog="Example: imgrec info runs/train/model.imgrec --json")
def info(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print all metadata as JSON.")] = False,
    card: Annotated[
        bool, typer.Option("--card", help="Print the model card embedded in the file (Markdown).")
    ] = False,
) -> None:
    """Show a model file's classes, backbone, preprocessing, metrics and data fingerprint."""
    from imgrec.bundle.format import read_metadata

    meta = read_metadata(model_file)
    if card:
        if not meta.get("model_card"):
            raise ImgrecError(
                f"{model_file} holds no model card; write one with imgrec card RUN_FOLDER."
            )
        sys.stdout.write(meta["model_card"])
        return
    if as_json:
        shown = {k: v for k, v in meta.items() if k not in ("history", "monitor")}
        out.print_json(json.dumps(shown))
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


@app.command(
    epilog='Example: imgrec card runs/train --intended-use "Sorting trail-camera photos of '
    'ants and bees for the 2025 survey; a person checks every bee."'
)
def card(
    run_folder: Annotated[Path, typer.Argument(help="A run folder from imgrec train.")],
    intended_use: Annotated[
        str | None,
        typer.Option(help="What the model is for, in your words (kept for later regenerations)."),
    ] = None,
    out_of_scope: Annotated[
        str | None,
        typer.Option(help="What it must not be used for, in your words (kept as well)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for model_card.md/.html (default: the run folder)."),
    ] = None,
) -> None:
    """Write the model card (model_card.md and .html) of a run again, e.g. after evaluate
    --group-by or with your own intended-use text, and update the copy inside model.imgrec."""
    from imgrec.monitor.card import write_card

    files = write_card(run_folder, intended_use, out_of_scope, out_dir)
    out.print(f"card:  {files.markdown}\nhtml:  {files.html}\nmodel: {files.model} (card embedded)")


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
    from imgrec.runs.train import train_run
    from imgrec.train import TrainConfig

    run = train_run(SAMPLE, out_dir, TrainConfig(epochs=epochs), exist_ok=True, progress=not quiet)
    m = run.evaluation.metrics
    out.print(
        f"[bold green]demo done[/]: {run.evaluated_on} accuracy {m['accuracy']:.2%} on {m['n']} "
        f"images\nmodel:  {run.model_path}\nreport: {run.report_path}\ncard:   {run.card_path}\n"
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
    from imgrec.models.registry import get_spec
    from imgrec.train.augment_preview import preview_augmentations

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
    from imgrec.audit.report import save_audit
    from imgrec.data.dataset import load_dataset
    from imgrec.runs.train import next_run_folder

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
    from imgrec.audit.run import audit_dataset, group_keys
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
    epilog="Example: imgrec calibrate runs/train/model.imgrec photos/ --split val "
    "--out runs/train/model.calibrated.imgrec"
)
def calibrate(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled images the model did NOT train on: a dataset with splits (its "
            "--split part is used), or a folder per class / CSV used whole."
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Write the calibrated model here (default: update in place)."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Which split to use when DATA has splits: val or test.")
    ] = "val",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 32,
) -> None:
    """Fit the model's temperature so its confidence matches its accuracy (temperature
    scaling); accuracy never changes. Prints ECE and NLL (log loss) before -> after."""
    from imgrec.runs.calibrate import calibrate_file

    report, path = calibrate_file(model_file, data, out_file, split, batch_size)
    c = report.cross_fitted
    out.print(
        f"calibrated on {report.images} images of {report.source}\n"
        f"temperature {report.temperature_before:.3g} -> {report.temperature:.3g}\n"
        f"ECE      {report.ece_before:.2%} -> {report.ece_after:.2%}\n"
        f"NLL      {report.nll_before:.4f} -> {report.nll_after:.4f}  (log loss)\n"
        f"honest (2-fold cross-fitted: T fitted on one half, measured on the other): "
        f"ECE {c['ece_before']:.2%} -> {c['ece_after']:.2%}, "
        f"NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}\n"
        f"accuracy {report.accuracy:.2%} (unchanged)",
        highlight=False,
        markup=False,
    )
    if c["nll_after"] > c["nll_before"]:
        err.print(
            "warning: cross-fitted, the temperature made NLL worse; it may not carry "
            "over to new images: calibrate on more held-out images.",
            style="yellow",
        )
    if report.skipped:
        err.print(f"{len(report.skipped)} unreadable file(s) skipped", style="yellow")
    out.print(f"model: {path}", highlight=False, markup=False)


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
    min_confidence: Annotated[
        float,
        typer.Option(
            help="Default minimum confidence: below it the answer is 'unknown' (0 = always "
            "answer); a request may set its own with the min_confidence field."
        ),
    ] = 0.0,
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

    from imgrec.infer.predict import check_min_confidence
    from imgrec.serve import ServeSettings, create_app

    check_min_confidence(min_confidence)
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
        min_confidence=min_confidence,
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


@app.command(
    epilog="Example: imgrec drift runs/train/model.imgrec --current predictions.db --since "
    "2026-11-01 --out runs/drift   (exit code 3 on drift)"
)
def drift(
    model_file: Annotated[Path, typer.Argument(help="A model.imgrec file.")],
    current: Annotated[
        str,
        typer.Option(
            help="What the model sees now: a prediction log (serve/predict --log) or images "
            "(folder, CSV with a path column, glob)."
        ),
    ],
    reference: Annotated[
        str | None,
        typer.Option(
            help="What it saw before: images or a log (default: the validation split summary "
            "stored in the model file by imgrec train)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for drift.json and drift.html.")
    ] = None,
    alpha: Annotated[
        float, typer.Option(help="Chance of a false alarm over all tests together (Holm).")
    ] = 0.05,
    since: Annotated[
        str | None,
        typer.Option(help="Log predictions from this date or date-time on (UTC), e.g. 2026-11-01."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Log predictions before this date-time; a bare date includes that day."),
    ] = None,
    permutations: Annotated[
        int, typer.Option(help="Shuffles in the embedding test's permutation test.")
    ] = 500,
    seed: Annotated[int, typer.Option(help="Random seed (subsampling, permutations).")] = 0,
    all_models: Annotated[
        bool,
        typer.Option("--all-models", help="Read log rows of every model file, not only this one."),
    ] = False,
    engine: Annotated[
        EngineChoice, typer.Option(help="Forward pass for image folders: onnx, torch or auto.")
    ] = EngineChoice.auto,
    quiet: Quiet = False,
) -> None:
    """Check whether the images a model sees have drifted from what it was trained for:
    feature-space shift, confidence, class mix, brightness, contrast, sharpness and size.
    Exit code 0 when there is no drift, 3 when there is (so a scheduler can retrain)."""
    from imgrec.monitor.window import parse_when

    def when(text: str | None, option: str) -> float | None:
        try:
            return None if text is None else parse_when(text, end=option == "--until")
        except ImgrecError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from None

    start, end = when(since, "--since"), when(until, "--until")
    from imgrec.monitor.detect import detect_drift

    run = detect_drift(
        model_file,
        current,
        reference,
        alpha=alpha,
        since=start,
        until=end,
        permutations=permutations,
        seed=seed,
        engine=engine.value,
        all_models=all_models,
        progress=not quiet and err.is_terminal,
    )
    result = run.result
    table = Table("test", "statistic", "p (Holm)", "effect", "shift")
    for t in result.tests:
        if t.skipped:
            table.add_row(t.title, "-", "-", "-", f"not run: {t.skipped}")
            continue
        mark = "[red]yes[/]" if t.shifted else ("negligible" if t.significant else "no")
        table.add_row(t.title, f"{t.statistic:.4g}", f"{t.p_adjusted:.3g}", t.effect_size, mark)
    out.print(table)
    for role, window in (("reference", run.reference), ("current", run.current)):
        skipped = f", {len(window.skipped)} unreadable skipped" if window.skipped else ""
        out.print(f"{role}: {len(window)} images{skipped} ({window.source})", highlight=False)
    colour = "red" if result.drift else "green"
    out.print(f"[bold {colour}]{escape(result.headline)}[/]")
    if out_dir is not None:
        from imgrec.monitor.drift_report import save_drift_report

        paths = save_drift_report(run, out_dir)
        out.print(f"report: {paths['html']}\njson:   {paths['json']}", highlight=False)
    if result.drift:
        raise typer.Exit(3)


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
