"""`imgrec` command line: a thin Typer layer over the Python API, one module per command
group (data, train, model, deploy, monitor, studio); common.py holds what they share.

Only Typer, Rich and imgrec.config load at start-up; each command imports what it needs when
it runs, so `imgrec --help` and `imgrec models` answer at once.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.main import get_command_name

from imgrec.cli import data, deploy, model, monitor, shards, studio, train
from imgrec.cli.common import SAMPLE, err, say
from imgrec.errors import ImgrecError

__all__ = ["SAMPLE", "app", "main"]

# The order of `imgrec --help`: the path from photos to a monitored model.
ORDER = (
    "train",
    "retrain",
    "compare",
    "tune",
    "lr-find",
    "evaluate",
    "predict",
    "embed",
    "info",
    "card",
    "models",
    "demo",
    "studio",
    "augment-preview",
    "audit",
    "split",
    "shards",
    "calibrate",
    "serve",
    "export",
    "drift",
)

app = typer.Typer(
    help="imgrec: from a folder of labelled photos to an evaluated, deployable image classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _commands() -> list:
    found = {
        command.name or get_command_name(command.callback.__name__): command
        for group in (data, shards, train, model, deploy, monitor, studio)
        for command in group.commands.registered_commands
    }
    if set(found) != set(ORDER):
        raise RuntimeError(f"ORDER and the command modules disagree: {sorted(found)}")
    return [found[name] for name in ORDER]


app.registered_commands.extend(_commands())


def _print_version(given: bool) -> None:
    if given:
        from imgrec import __version__

        print(f"imgrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print imgrec's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1, never a traceback;
    a name quoted in the message (a path with `[/x]` or ESC in it) prints as itself."""
    try:
        app(prog_name="imgrec")
    except ImgrecError as exc:
        say(f"error: {exc}", "red", lines=False)
        if "IMGREC_LAUNCH_NOTES" in os.environ:  # one of several processes: tell the launcher
            from imgrec.runs.launch import note_error

            note_error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
