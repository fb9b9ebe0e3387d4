"""Commands that watch a deployed model: drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imgrec.cli.common import (
    EngineChoice,
    Quiet,
    err,
    existing_model,
    in_range,
    out,
    say,
    shown,
    with_default,
)
from imgrec.errors import ImgrecError
from imgrec.text import printable

commands = typer.Typer()


def _check_permutations(n: int) -> int:
    from imgrec.monitor.detect import MIN_PERMUTATIONS  # only when drift runs, not for --help

    return in_range(MIN_PERMUTATIONS)(n)


@commands.command(
    epilog="Example: imgrec drift runs/train/model.imgrec --current predictions.db --since "
    "2026-11-01 --out runs/drift   (exit code 3 on drift)"
)
def drift(
    model_file: Annotated[
        Path, typer.Argument(callback=existing_model, help="A model.imgrec file.")
    ],
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
            help=with_default(
                "What it saw before: images or a log.",
                "the validation split summary stored in the model file by imgrec train",
            )
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=with_default("Folder for drift.json and drift.html.", "none, the table only"),
        ),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            help="Chance of a false alarm over all tests together (Holm).",
            callback=in_range(0, 1, low_open=True, high_open=True),
        ),
    ] = 0.05,
    since: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "Log predictions from this date or date-time on (UTC), e.g. 2026-11-01.",
                "the first",
            )
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                "Log predictions before this date-time; a bare date includes that day.",
                "the last",
            )
        ),
    ] = None,
    permutations: Annotated[
        int,
        typer.Option(
            help="Shuffles in the embedding test's permutation test.",
            callback=_check_permutations,
        ),
    ] = 500,
    seed: Annotated[
        int,
        typer.Option(help="Random seed (subsampling, permutations).", callback=in_range(0)),
    ] = 0,
    all_models: Annotated[
        bool,
        typer.Option(
            "--all-models",
            help=with_default("Read log rows of every model file, not only this one.", "off"),
        ),
    ] = False,
    engine: Annotated[
        EngineChoice, typer.Option(help="Forward pass for image folders: onnx, torch or auto.")
    ] = EngineChoice.auto,
    quiet: Quiet = False,
) -> None:
    """Check whether the images a model sees have drifted from what it was trained for.

    Tests feature-space shift, confidence, class mix, brightness, contrast, sharpness and
    size. Exit code 0 when there is no drift, 3 when there is (so a scheduler can retrain).
    """
    from imgrec.monitor.window import parse_when

    def when(text: str | None, option: str) -> float | None:
        try:
            return None if text is None else parse_when(text, end=option == "--until")
        except ImgrecError as exc:
            raise typer.BadParameter(printable(str(exc)), param_hint=option) from None

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
            table.add_row(t.title, "-", "-", "-", f"not run: {shown(t.skipped)}")
            continue
        mark = "[red]yes[/]" if t.shifted else ("negligible" if t.significant else "no")
        table.add_row(t.title, f"{t.statistic:.4g}", f"{t.p_adjusted:.3g}", t.effect_size, mark)
    out.print(table)
    for role, window in (("reference", run.reference), ("current", run.current)):
        skipped = f", {len(window.skipped)} unreadable skipped" if window.skipped else ""
        say(f"{role}: {len(window)} images{skipped} ({window.source})", console=out)
    colour = "red" if result.drift else "green"
    out.print(f"[bold {colour}]{shown(result.headline)}[/]")
    if out_dir is not None:
        from imgrec.monitor.drift_report import save_drift_report

        paths = save_drift_report(run, out_dir)
        say(f"report: {paths['html']}\njson:   {paths['json']}", console=out)
    if result.drift:
        raise typer.Exit(3)
