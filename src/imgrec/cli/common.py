"""What the command modules share: the two consoles and the two ways to print names from
outside on them (`shown`, `say`), the choice enums, option types, the checks that refuse
out-of-range values, and the help texts' "[default: ...]" notes.

Nothing here imports torch or any other heavy library: `imgrec --help` imports this module.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from imgrec.config import (
    AUGMENT_PRESETS,
    BALANCES,
    ENGINES,
    MIXES,
    OPTIMIZERS,
    PLACES,
    PRECISIONS,
    PRESETS,
    WEIGHTS,
    TrainConfig,
)
from imgrec.data.cache_policy import CACHE_MODES
from imgrec.text import printable

out = Console(soft_wrap=True)  # long paths stay on one line, also when piped
err = Console(stderr=True, soft_wrap=True)


# ---- names from outside: class names, file names, paths, messages that quote them ------------
def shown(value: object) -> str:
    """`value` ready to go inside Rich markup (a print, a table cell): control characters made
    visible (ESC as \\x1b, see imgrec.text.printable) and square brackets escaped, so a class
    named `[/x]` prints as itself instead of crashing Rich, and `[bold]` is not a style."""
    return escape(printable(value))


def say(
    text: object, style: str | None = None, *, console: Console = err, lines: bool = True
) -> None:
    """Print a message that may quote names from outside exactly as it is: no markup, no
    highlighting, control characters made visible; newlines and tabs kept unless `lines` is
    False (an error is one line, whatever a file name holds)."""
    console.print(printable(text, lines=lines), style=style, markup=False, highlight=False)


SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "hymenoptera"

# The choices of the options, from the lists in imgrec.config (declared once).
Augment = StrEnum("Augment", {v: v for v in AUGMENT_PRESETS})
Cache = StrEnum("Cache", {v: v for v in CACHE_MODES})
Mix = StrEnum("Mix", {v: v for v in MIXES})
Balance = StrEnum("Balance", {v: v for v in BALANCES})
Optimizer = StrEnum("Optimizer", {v: v for v in OPTIMIZERS})
Precision = StrEnum("Precision", {v: v for v in PRECISIONS})
Weights = StrEnum("Weights", {v: v for v in WEIGHTS})
EngineChoice = StrEnum("EngineChoice", {v: v for v in ENGINES})
Preset = StrEnum("Preset", {v: v for v in PRESETS})
Place = StrEnum("Place", {v: v for v in PLACES})


class Format(StrEnum):
    """How `imgrec predict` writes its answers."""

    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


def value(choice: StrEnum | None) -> str | None:
    return None if choice is None else choice.value


# ---- "[default: ...]" for options whose None means "decided elsewhere" ------------------------
def with_default(help_text: str, default: str) -> str:
    """`help_text` ending in "[default: DEFAULT]", for an option whose value None stands for
    something (Typer shows nothing for None); the brackets are escaped for Rich."""
    return f"{help_text} {escape(f'[default: {default}]')}"


def _setting_text(v: Any, name: str) -> str:
    """A setting's value as its flag reads (--no-head, 0.001); not for names from outside."""
    if isinstance(v, bool):
        return name.replace("_", "-") if v else f"no-{name.replace('_', '-')}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _family_labels(names: list[str], all_names: list[str]) -> str:
    """'*-hog, cnn-scratch' for names that cover every *-hog family plus cnn-scratch."""
    from imgrec.models.families import FEATURES

    left, labels = list(names), []
    for features in FEATURES:
        pattern = f"*-{features}"
        matching = [n for n in all_names if fnmatch.fnmatch(n, pattern)]
        if len(matching) > 1 and all(n in left for n in matching):
            labels.append(pattern)
            left = [n for n in left if n not in matching]
    return ", ".join(labels + left)


def family_default(field: str) -> str:
    """The default of a TrainConfig field as the families set it, e.g. "6; *-hog, *-embed: 0;
    cnn-scratch: 95" for epochs: TrainConfig's value, then each family's own."""
    from imgrec.models.families import families

    base = {f.name: f.default for f in dataclasses.fields(TrainConfig)}[field]
    named = families()
    differing: dict[str, list[str]] = {}
    for family in named:
        if field in family.defaults and family.defaults[field] != base:
            differing.setdefault(_setting_text(family.defaults[field], field), []).append(
                family.name
            )
    all_names = [f.name for f in named]
    parts = [_setting_text(base, field)]
    parts += [f"{_family_labels(names, all_names)}: {v}" for v, names in differing.items()]
    return "; ".join(parts)


def train_help(help_text: str, field: str) -> str:
    """Help of an option that overrides a TrainConfig field, with the families' defaults."""
    return with_default(help_text, family_default(field))


# ---- checks: out-of-range values end in one sentence and exit code 2 ------------------------
def _number(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def existing_data(value: Any) -> Any:
    """A Typer callback for a DATA argument: a local path with nothing there ends here with
    the loader's own sentence (exit 1), before the command imports torch and the rest
    (seconds). URLs (s3://...) and None (not given) pass; the command checks them."""
    from imgrec.data.remote import is_url

    if value is not None and not is_url(value):
        from imgrec.data.dataset import existing_dataset_path

        existing_dataset_path(value)
    return value


def existing_model(value: Any) -> Any:
    """A Typer callback for a MODEL_FILE argument: no file there ends here with the model
    loader's own sentence (exit 1), before the command's heavy imports."""
    if value is not None:
        from imgrec.bundle.format import check_model_path

        check_model_path(Path(value))
    return value


def in_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[Any], Any]:
    """A Typer callback that refuses numbers outside [low, high] (or the open ends) with one
    sentence, e.g. "0 is out of range: use 1 or more."; None (not given) passes."""
    lower = None if low is None else (f"above {_number(low)}" if low_open else None)
    upper = None if high is None else (f"below {_number(high)}" if high_open else None)
    if low is not None and high is not None:
        if lower is None and upper is None:
            rule = f"a number from {_number(low)} to {_number(high)}"
        else:
            lower = lower or f"of at least {_number(low)}"
            upper = upper or f"at most {_number(high)}"
            rule = f"a number {lower} and {upper}"
    elif low is not None:
        rule = f"a number {lower}" if lower else f"{_number(low)} or more"
    else:
        rule = f"a number {upper}" if upper else f"{_number(high)} or less"

    def check(v: Any) -> Any:
        if v is None:
            return v
        too_low = low is not None and (v <= low if low_open else v < low)
        too_high = high is not None and (v >= high if high_open else v > high)
        if too_low or too_high:
            raise typer.BadParameter(f"{_number(v)} is out of range: use {rule}.")
        return v

    return check


def parse_lr(text: str | None, auto: str | None = None) -> float | None:
    """--lr's text as a number; 'auto' (the range test) is for the caller to handle, or, where
    `auto` says why it does not apply, refused with that reason."""
    if text is None or (text == "auto" and auto is None):
        return None
    if text == "auto":
        raise typer.BadParameter(auto, param_hint="'--lr'")
    try:
        lr = float(text)
    except ValueError:
        takes = "a number or 'auto'" if auto is None else "a number, e.g. 1e-4"
        raise typer.BadParameter(
            f"{text!r} is not a number; --lr takes {takes}.", param_hint="'--lr'"
        ) from None
    if not lr > 0:
        raise typer.BadParameter(
            f"{text} is out of range: use a learning rate above 0.", param_hint="'--lr'"
        )
    return lr


def check_lr(text: str | None) -> str | None:
    """Typer callback for train's --lr: a number above 0, or 'auto'."""
    parse_lr(text)
    return text


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


def check_ratios(text: str | None) -> str | None:
    """Typer callback for --split: TRAIN/VAL/TEST percentages."""
    if text is not None:
        parse_ratios(text)
    return text


# ---- options several commands share, declared once ----------------------------------------
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help=with_default("No progress bars.", "off"))
]
SplitRatios = Annotated[
    str,
    typer.Option(
        "--split",
        help="Train/val/test percentages when the data has no splits: 70/15/15, 80/10/10 or "
        "your own.",
        callback=check_ratios,
    ),
]
Seed = Annotated[int, typer.Option(help="Random seed.", callback=in_range(0))]
MinConfidence = Annotated[
    float | None,
    typer.Option(
        help=with_default(
            "Answer 'unknown' when the top-1 probability is below this (0 <= P < 1); the "
            "evaluation report's coverage curve shows what each value costs.",
            "none, always the top class",
        ),
    ),
]  # checked by imgrec.infer.predict.check_min_confidence, as in the API and the server


On = Annotated[
    Place,
    typer.Option(
        "--on",
        help="local: this process; ray: a Ray cluster (Ray Data; pip install 'imgrec\\[ray]'), "
        "started on this machine or joined with --address.",
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        help=with_default(
            "With --on ray: the cluster to join (auto, HOST:6379 or ray://HOST:10001).",
            "RAY_ADDRESS, else a new local cluster of this machine's CPUs",
        )
    ),
]
Actors = Annotated[
    int | None,
    typer.Option(
        help=with_default(
            "With --on ray: the most inference actors (ONNX Runtime sessions) at once.",
            "as many as the cluster's CPUs allow",
        ),
        callback=in_range(1),
    ),
]

PartSize = Annotated[
    int,
    typer.Option(
        help="Rows per output part file, with --on ray or parquet output (a part is written "
        "when it is full, or 30 s after the last one).",
        callback=in_range(1),
    ),
]


def batch_size_option(help_text: str = "Images per forward pass.") -> Any:
    return typer.Option(help=help_text, callback=in_range(1))


def renamed(old: str, new: str) -> None:
    """One line on stderr for an option used by its old name (kept for one release)."""
    say(
        f"warning: {old} is now called {new}; the old name goes away in the next release.", "yellow"
    )


def print_audit_summary(result) -> None:
    """The audit's one-line findings, coloured by severity, on stderr (stdout stays data)."""
    style = {"error": "red", "warning": "yellow", "info": "cyan"}
    for line in result.summary():
        severity = line.split(":", 1)[0]
        say(line, style.get(severity))
