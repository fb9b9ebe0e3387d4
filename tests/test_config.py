"""Settings are declared once (imgrec.config); the CLI and the model card derive from them."""

from __future__ import annotations

import typer.main

from imgrec.cli import app
from imgrec.config import NO_OPTION, TrainConfig, option_for


def _train_options() -> set[str]:
    command = typer.main.get_command(app).commands["train"]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_every_train_setting_with_an_option_is_an_option_of_imgrec_train():
    options = _train_options()
    fields = [f for f in TrainConfig().to_dict() if f != "head"]
    missing = [option_for(f) for f in fields if option_for(f) and option_for(f) not in options]
    assert not missing, f"TrainConfig fields without their train option: {missing}"
    assert "--head" in options  # --head/--no-head
    assert not {f"--{f.replace('_', '-')}" for f in NO_OPTION} & options, (
        "a field listed in NO_OPTION has an option now: remove it from NO_OPTION"
    )


def test_the_cards_reproduce_command_uses_the_train_options():
    from pathlib import Path

    from imgrec.monitor.card import reproduce_command

    config = {**TrainConfig(warmup_fraction=0.3).to_dict(), "source": "photos"}
    command = reproduce_command(config, Path("runs/pets"))
    used = {word for word in command.split() if word.startswith("--")}
    assert used - {"--split-file", "--out", "--head", "--no-head"} <= _train_options()
    assert "warmup_fraction=0.3" in command  # no option: said as a config.json setting
