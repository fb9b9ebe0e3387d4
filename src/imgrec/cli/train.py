"""Commands that fit models: train, retrain, compare, tune, lr-find, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imgrec.cli.common import (
    SAMPLE,
    Augment,
    Balance,
    Cache,
    Mix,
    Optimizer,
    Precision,
    Preset,
    Quiet,
    Seed,
    SplitRatios,
    Weights,
    check_lr,
    err,
    existing_data,
    in_range,
    out,
    parse_lr,
    parse_ratios,
    print_audit_summary,
    say,
    shown,
    train_help,
    value,
    with_default,
)
from imgrec.config import TrainConfig
from imgrec.errors import ImgrecError

commands = typer.Typer()

RETRAIN_AUTO_LR = (
    "'auto' runs a learning-rate range test on a fresh head, and a retraining continues "
    "trained weights: give a number, or leave --lr out for a third of the original's."
)


def _check_retrain_lr(text: str | None) -> str | None:
    """Typer callback for retrain's --lr: what train's --lr takes, but 'auto' is refused."""
    parse_lr(text, auto=RETRAIN_AUTO_LR)
    return text


@commands.command(
    epilog="Example: imgrec train photos/ --out runs/pets   or, for the most accuracy: "
    "imgrec train photos/ --preset best"
)
def train(
    data: Annotated[
        str | None,
        typer.Argument(
            callback=existing_data,
            help="Folder per class, folder with train/val/test folders, CSV path,label[,split], "
            "a shards folder (imgrec shards), or the same in object storage (s3://bucket/photos/).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help=with_default("Run folder.", "runs/train-N"))
    ] = None,
    preset: Annotated[
        Preset,
        typer.Option(
            help="fast: the head on frozen features only (seconds to a minute). default: the "
            "head, then fine-tuning only when the errors it leaves and the measured epoch time "
            "say it can pay. best: a head on the joined features of the three offline "
            "EfficientNet-Lites (a few minutes). Options given below override the preset."
        ),
    ] = Preset.default,
    model: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "A family (svm-hog, rf-hog, tree-hog, svm-embed, logreg-embed, mlp-embed, "
                "cnn-scratch; `imgrec models` lists them), a backbone: efficientnet_lite0, "
                "efficientnet_lite1 or efficientnet_lite2 (offline) or any timm name, or "
                "backbones joined with '+' (one head on their joined features). Each family "
                "starts from its own settings; the options below override them.",
                "efficientnet_lite0; with --preset best, "
                "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2",
            )
        ),
    ] = None,
    weights: Annotated[
        Weights | None,
        typer.Option(help=train_help("Start from ImageNet weights or from scratch.", "weights")),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=train_help("Max fine-tuning epochs (phase 2); 0 = head only.", "epochs"),
            callback=in_range(0),
        ),
    ] = None,
    head: Annotated[
        bool | None,
        typer.Option(help=train_help("Phase 1: fit the head on frozen features first.", "head")),
    ] = None,
    lr: Annotated[
        str | None,
        typer.Option(
            help=train_help(
                "Head learning rate in fine-tuning, or 'auto' for a range test first (see "
                "imgrec lr-find).",
                "lr",
            ),
            callback=check_lr,
            metavar="<number|auto>",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            help=with_default("Input size in pixels.", "the backbone's own"),
            callback=in_range(32, 1024),
        ),
    ] = None,
    backbone_lr_mult: Annotated[
        float | None,
        typer.Option(
            help=train_help("Backbone LR = lr x this.", "backbone_lr_mult"),
            callback=in_range(0, 1),
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=train_help("Images per step.", "batch_size"), callback=in_range(1)),
    ] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            help=train_help(
                "Arithmetic of training steps: auto is bf16 mixed precision on GPUs that "
                "have it (16 on older ones) and float32 on CPUs; 32, bf16 or 16 force one.",
                "precision",
            )
        ),
    ] = None,
    augment: Annotated[
        Augment | None,
        typer.Option(help=train_help("Training augmentation preset.", "augment")),
    ] = None,
    mix: Annotated[
        Mix | None,
        typer.Option(
            help=train_help(
                "MixUp/CutMix on fine-tuning batches; off by default: on small datasets it "
                "slows convergence within a short schedule.",
                "mix",
            )
        ),
    ] = None,
    balance: Annotated[
        Balance | None,
        typer.Option(
            help=train_help(
                "For imbalanced classes: inverse-frequency loss weights, or class-balanced "
                "batches (sampler).",
                "balance",
            )
        ),
    ] = None,
    optimizer: Annotated[
        Optimizer | None,
        typer.Option(help=train_help("AdamW or SGD with momentum.", "optimizer")),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(help=train_help("Weight decay.", "weight_decay"), callback=in_range(0)),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(
            help=train_help("Dropout before the classifier.", "dropout"),
            callback=in_range(0, 1, high_open=True),
        ),
    ] = None,
    label_smoothing: Annotated[
        float | None,
        typer.Option(
            help=train_help("Label smoothing.", "label_smoothing"),
            callback=in_range(0, 1, high_open=True),
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            help=train_help("Early-stopping patience in epochs.", "patience"),
            callback=in_range(1),
        ),
    ] = None,
    time_limit: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "Time for the whole run (e.g. 10m, 1h): decoding, audit, head, fine-tuning and "
                "evaluation all count. Fine-tuning gets what is left after an estimate of the "
                "evaluation; its learning-rate schedule follows the clock, so it ends on a low "
                "rate; the best epoch is kept.",
                "none; without --epochs, fine-tuning gets at most 5 min",
            ),
            metavar="<duration>",
        ),
    ] = None,
    split: SplitRatios = "70/15/15",
    split_file: Annotated[
        Path | None,
        typer.Option(
            help=with_default(
                "Reuse a split.csv from an earlier run.", "the data's own splits, else --split"
            )
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help=train_help("Random seed (split, init, order).", "seed"), callback=in_range(0)
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help=with_default(
                "DataLoader worker processes that augment fine-tuning batches.",
                "on a GPU every core but one; on a CPU none up to 4 cores, else a quarter "
                "of them, at most 4",
            ),
            callback=in_range(0),
        ),
    ] = None,
    cache: Annotated[
        Cache,
        typer.Option(
            help="Where the images wait while training: ram (decoded; fastest), disk (resized "
            "JPEG shards in the cache folder, decoded a batch at a time: memory stays flat "
            "however many images), or auto: ram while the decoded images fit --cache-memory, "
            "else disk. Default: auto.",
        ),
    ] = Cache.auto,
    cache_memory: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "Memory the decoded images may take on this machine with --cache auto (e.g. 8GB, "
                "500MB); --devices N processes share it.",
                "half the memory available at the start",
            ),
            metavar="<size>",
        ),
    ] = None,
    devices: Annotated[
        int,
        typer.Option(
            help="Processes on this machine that fine-tune together (DDP): one per GPU where "
            "there are GPUs, else CPU processes sharing the cores. --batch-size is split among "
            "all processes. Default: 1.",
            callback=in_range(1),
        ),
    ] = 1,
    num_nodes: Annotated[
        int,
        typer.Option(
            help="Machines in the job: run the same command on each with MASTER_ADDR, "
            "MASTER_PORT and NODE_RANK set, or start it with torchrun or srun (docs/scaling.md). "
            "Default: 1.",
            callback=in_range(1),
        ),
    ] = 1,
    resume: Annotated[
        Path | None,
        typer.Option(help=with_default("Continue an interrupted run folder.", "none")),
    ] = None,
    exist_ok: Annotated[
        bool,
        typer.Option("--exist-ok", help=with_default("Replace an existing run folder.", "off")),
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
    from imgrec.data.cache_policy import parse_size

    if cache_memory is not None:
        parse_size(cache_memory)  # a wrong size ends here, before any work
    from imgrec.bundle.run_folder import next_run_folder
    from imgrec.config import parse_duration
    from imgrec.models.families import preset_config
    from imgrec.runs.train import train_run
    from imgrec.train import TrainingInterrupted

    folder = resume or out_dir or next_run_folder()
    config = preset_config(
        preset.value,
        model,
        weights=value(weights),
        augment=value(augment),
        mix=value(mix),
        balance=value(balance),
        optimizer=value(optimizer),
        lr=parse_lr(lr),
        image_size=image_size,
        backbone_lr_mult=backbone_lr_mult,
        head=head,
        epochs=epochs,
        patience=patience,
        weight_decay=weight_decay,
        dropout=dropout,
        label_smoothing=label_smoothing,
        batch_size=batch_size,
        precision=value(precision),
        seed=seed,
        workers=workers,
        time_limit=None if time_limit is None else parse_duration(time_limit),
    )
    from imgrec.runs import launch

    if launch.needs_launch(devices, num_nodes):
        launch.check_distributable(config.model)
        launch.launch(devices, num_nodes, sys.argv[1:])
        return
    launch.check_world(devices, num_nodes)
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
            on_lr=lambda v: err.print(f"learning rate from the range test: {v:.3g}"),
            on_plan=say,
            cache=cache.value,
            cache_memory=None if cache_memory is None else parse_size(cache_memory),
        )
    except (TrainingInterrupted, KeyboardInterrupt):
        err.print(
            f"[yellow]interrupted[/]; finished epochs are kept. Continue with: "
            f"imgrec train --resume {shown(folder)}"
        )
        raise typer.Exit(130) from None
    if run is None:  # another process of a multi-process run: rank 0 reports
        return
    m = run.evaluation.metrics
    out.print(
        f"[bold green]done[/] {run.evaluated_on} accuracy {m['accuracy']:.2%}, "
        f"macro-F1 {m['macro_f1']:.3f} on {m['n']} images"
    )
    say(f"model:  {run.model_path}\nreport: {run.report_path}", console=out)
    say(f"card:   {run.card_path}", console=out)


@commands.command(
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
            "--out",
            help=with_default("Run folder of the retrained model.", "RUN_FOLDER-retrain"),
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=with_default("Max fine-tuning epochs (deep models).", "half the original's")
        ),
    ] = None,
    lr: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "Learning rate (deep models), a number above 0. 'auto' is refused: the range "
                "test needs a fresh head.",
                "a third of the original's",
            ),
            callback=_check_retrain_lr,
            metavar="<number>",
        ),
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
    """Continue training a model on its old split plus newly labelled images.

    The new model is kept only if it is at least as good on the old test split (exit code 4
    when the old model stays).
    """
    ratios = parse_ratios(split)
    learning_rate = parse_lr(lr, auto=RETRAIN_AUTO_LR)
    from imgrec.runs.retrain import retrain_run
    from imgrec.train import TrainingInterrupted

    try:
        run = retrain_run(
            run_folder,
            new,
            out_dir,
            epochs=epochs,
            lr=learning_rate,
            min_gain=min_gain,
            ratios=ratios,
            replace_old=replace,
            progress=not quiet,
        )
    except (TrainingInterrupted, KeyboardInterrupt):
        err.print(f"[yellow]interrupted[/]; the model in {shown(run_folder)} is untouched.")
        raise typer.Exit(130) from None
    say(f"run:        {run.folder}\ncomparison: {run.folder / 'retrain.json'}", console=out)
    if not run.accepted:
        say(run.message)
        raise typer.Exit(4)
    where = f"replaced {run.old_model}" if run.replaced else f"model: {run.model_path}"
    out.print(f"[bold green]done[/] {shown(run.message)} {shown(where)}")


def _leaderboard() -> str:
    from imgrec.models.families import LEADERBOARD

    return ", ".join(LEADERBOARD)


@commands.command(epilog="Example: imgrec compare photos/ --budget 20m --out runs/compare")
def compare(
    data: Annotated[
        Path,
        typer.Argument(
            callback=existing_data, help="Labelled photos: class folders, splits or CSV."
        ),
    ],
    budget: Annotated[
        str,
        typer.Option(
            help="Time for the whole comparison, e.g. 20m, 1h, 90s.", metavar="<duration>"
        ),
    ] = "20m",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help=with_default("Folder.", "runs/compare-N"))
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(help=with_default("Comma-separated families to compare.", _leaderboard())),
    ] = None,
    split: SplitRatios = "70/15/15",
    split_file: Annotated[
        Path | None,
        typer.Option(
            help=with_default(
                "Reuse a split.csv from an earlier run.", "the data's own splits, else --split"
            )
        ),
    ] = None,
    seed: Seed = 0,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help=with_default("Replace an existing folder.", "off"))
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Train every model family on the same split within a time budget and rank them.

    Writes leaderboard.csv/.json/.png/.html and keeps the winner as best.imgrec.
    """
    from imgrec.bundle.run_folder import next_run_folder
    from imgrec.config import parse_duration
    from imgrec.models.families import LEADERBOARD

    seconds = parse_duration(budget)  # a wrong budget ends here, before the heavy imports
    from imgrec.runs.compare import compare as run_compare

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
        say=say,
    )
    table = Table("#", "family", "accuracy", "macro-F1", "train s", "ms/img", "MB", "note")
    for i, e in enumerate(board.entries, 1):
        if e.status == "ok":
            table.add_row(
                str(i),
                shown(e.family),
                f"{e.accuracy:.2%}",
                f"{e.macro_f1:.3f}",
                f"{e.train_seconds:.0f}",
                f"{e.ms_per_image:.1f}",
                f"{e.size_mb:.1f}",
                shown(e.note),
            )
        else:
            table.add_row("", shown(e.family), e.status, "", "", "", "", shown(e.note))
    out.print(table)
    where = f"scored on the {board.evaluated_on} split ({board.eval_images} images)"
    out.print(f"{where}; took {board.wall_seconds / 60:.1f} min")
    say(f"leaderboard: {folder / 'leaderboard.html'}", console=out)
    if board.best is None:
        raise ImgrecError("no family finished; see the notes above.")
    say(f"best model: {board.best}", console=out)


@commands.command(epilog="Example: imgrec tune photos/ --trials 20 --budget 30m --out runs/tune")
def tune(
    data: Annotated[
        Path | None,
        typer.Argument(
            callback=existing_data, help="Labelled photos (optional when continuing --out)."
        ),
    ] = None,
    trials: Annotated[
        int, typer.Option(help="Trials in all, counting earlier ones.", callback=in_range(1))
    ] = 30,
    budget: Annotated[
        str | None,
        typer.Option(
            help=with_default("Stop starting trials after this long, e.g. 1h.", "none"),
            metavar="<duration>",
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Search folder.")] = Path("runs/tune"),
    storage: Annotated[
        str | None,
        typer.Option(help=with_default("Optuna storage URL; resumable.", "sqlite:///OUT/study.db")),
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated backbones to search over.")
    ] = "efficientnet_lite0",
    epochs: Annotated[
        int | None,
        typer.Option(
            help=with_default(
                "Max fine-tuning epochs per trial.", f"as train: {TrainConfig.epochs}"
            ),
            callback=in_range(0),
        ),
    ] = None,
    split: SplitRatios = "70/15/15",
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Search training settings and backbones with Optuna; run it again to continue a search.

    Searches learning rate, weight decay, dropout, label smoothing, augmentation, image size
    and backbone (TPE + median pruning). Writes best.imgrec, report.html, trials.csv,
    history.png and importance.png.
    """
    try:
        result = _run_tune(
            data, out_dir, trials, budget, storage, models, epochs, split, seed, quiet
        )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted[/]; finished trials are kept in {shown(out_dir)}. "
            "Continue with the same command."
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
    say(f"best settings: {params}", console=out)
    say(
        f"best model: {result.best_model} ({result.evaluated_on} accuracy "
        f"{result.test_accuracy:.2%})",
        console=out,
    )


def _run_tune(data, out_dir, trials, budget, storage, models, epochs, split, seed, quiet):
    from imgrec.config import parse_duration
    from imgrec.runs.tune_settings import require_tunable, search_source

    # the mistakes a person makes are said before the heavy imports
    seconds = parse_duration(budget) if budget else None
    ratios = parse_ratios(split)
    backbones = [m.strip() for m in models.split(",") if m.strip()]
    require_tunable(backbones)
    source = search_source(out_dir, data)
    from imgrec.runs.tune import tune as run_tune

    return run_tune(
        source,
        out_dir,
        trials=trials,
        budget=seconds,
        storage=storage,
        backbones=backbones,
        epochs=epochs,
        ratios=ratios,
        seed=seed,
        progress=not quiet,
        say=say,
    )


@commands.command("lr-find", epilog="Example: imgrec lr-find photos/ --out lr_find.png")
def lr_find(
    data: Annotated[Path, typer.Argument(callback=existing_data, help="Labelled photos.")],
    model: Annotated[str, typer.Option(help="Backbone or deep family.")] = "efficientnet_lite0",
    out_file: Annotated[Path, typer.Option("--out", help="Plot to write.")] = Path("lr_find.png"),
    batch_size: Annotated[
        int | None,
        typer.Option(help=train_help("Images per step.", "batch_size"), callback=in_range(1)),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Training steps in the test.", callback=in_range(1))
    ] = 100,
    quiet: Quiet = False,
) -> None:
    """Learning-rate range test: plot loss against learning rate and suggest one.

    Use the suggestion with `imgrec train --lr VALUE`, or let `--lr auto` run the test.
    """
    from imgrec.models.families import require_learning_rate

    require_learning_rate(model)  # said before the training stack is imported (seconds)
    from imgrec.api import ImageClassifier, load_dataset
    from imgrec.runs.train import split_data
    from imgrec.train.lr_find import find_lr, plot_lr

    clf = ImageClassifier(model, batch_size=batch_size)
    train, val, _ = split_data(load_dataset(data), (0.85, 0.15, 0.0), None, clf.config.seed)
    finding = find_lr(clf, train, val, steps=steps, progress=not quiet)
    plot_lr(finding, out_file)
    out.print(f"suggested learning rate: {finding.suggestion:.3g}")
    say(f"plot: {out_file}", console=out)


@commands.command(epilog="Example: imgrec demo --out runs/demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder, replaced if present.")] = Path(
        "runs/demo"
    ),
    epochs: Annotated[
        int | None,
        typer.Option(
            help=with_default("Fine-tuning epochs (0 = the head only).", "as imgrec train decides"),
            callback=in_range(0),
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Train on the bundled ants-vs-bees sample (offline, about a minute on a laptop CPU)."""
    from imgrec.models.families import preset_config
    from imgrec.runs.train import train_run

    config = preset_config(epochs=epochs)
    run = train_run(SAMPLE, out_dir, config, exist_ok=True, progress=not quiet)
    m = run.evaluation.metrics
    out.print(
        f"[bold green]demo done[/]: {run.evaluated_on} accuracy {m['accuracy']:.2%} on {m['n']} "
        f"images\nmodel:  {shown(run.model_path)}\nreport: {shown(run.report_path)}\n"
        f"card:   {shown(run.card_path)}\n"
        f"try:    imgrec predict {shown(run.model_path)} {shown(SAMPLE / 'val' / 'bees')} --top-k 2"
    )
