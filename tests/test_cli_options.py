"""The command line's surface: command order, one-line summaries, every option's default and
choices in --help, out-of-range values refused with exit code 2, renamed options, --version,
and a start-up that loads no heavy library for --help and `imgrec models`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from runhelpers import COMMANDS, cli_env, make_class_dataset, run_imgrec, squash

import imgrec
from imgrec.cli.common import (
    Augment,
    Balance,
    EngineChoice,
    Mix,
    Optimizer,
    Precision,
    Weights,
    family_default,
)
from imgrec.config import (
    AUGMENT_PRESETS,
    BALANCES,
    ENGINES,
    MIXES,
    OPTIMIZERS,
    PRECISIONS,
    WEIGHTS,
    TrainConfig,
)
from imgrec.models.families import SCRATCH_RECIPE

HEAVY = (
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "sklearn",
    "onnx",
    "onnxruntime",
    "fastapi",
    "matplotlib",
    "cleanlab",
    "optuna",
)


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, no traceback, every fragment in the message (Rich's panel borders, where it
    wraps the message, removed)."""
    assert result.returncode == 2, f"exit code {result.returncode}:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    text = squash(result.stderr.replace("│", "")).lower()
    for fragment in fragments:
        assert squash(fragment).lower() in text, result.stderr


def wide_help(*args: str) -> str:
    """`imgrec ARGS --help` 250 columns wide, so Rich wraps only what has line breaks."""
    env = {**cli_env(), "COLUMNS": "250"}
    result = subprocess.run(
        [sys.executable, "-m", "imgrec", *args, "--help"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def panel(text: str, title: str) -> list[str]:
    """The inside lines of a Rich help panel ("Options", "Commands", ...)."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("╭─ " + title):
            inside = True
        elif line.startswith("╰"):
            inside = False
        elif inside:
            lines.append(line.strip("│").rstrip())
    return lines


def option_rows(text: str) -> dict[str, str]:
    """{first option name: its whole row, continuation lines joined} of the Options panel."""
    rows: dict[str, str] = {}
    name = None
    for line in panel(text, "Options"):
        match = re.match(r"\s+(?:\*\s+)?(--[\w-]+)", line)
        if match:
            name = match.group(1)
            rows[name] = line
        elif name is not None:
            rows[name] += " " + line.strip()
    return rows


# ---- the command list -----------------------------------------------------------------------
def test_commands_keep_their_order_and_one_line_summaries():
    lines = panel(wide_help(), "Commands")
    names = [line.split()[0] for line in lines]
    assert names == list(COMMANDS), "a summary wrapped onto a second line, or the order changed"


def test_version():
    result = run_imgrec("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"imgrec {imgrec.__version__}" == "imgrec 0.1.0"


# ---- every option shows its default and its choices ----------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_shows_its_default(command):
    text = wide_help(command)
    rows = option_rows(text)
    assert rows, text
    for name, row in rows.items():
        if name == "--help":
            continue
        assert "[default:" in row or "[required]" in row, f"{command} {name}: {row}"
    assert "Example" in text


def test_choices_come_from_the_config_lists():
    for enum, choices in [
        (Augment, AUGMENT_PRESETS),
        (Mix, MIXES),
        (Balance, BALANCES),
        (Optimizer, OPTIMIZERS),
        (Weights, WEIGHTS),
        (EngineChoice, ENGINES),
        (Precision, PRECISIONS),
    ]:
        assert [m.value for m in enum] == list(choices)
    train = option_rows(wide_help("train"))
    assert f"<{'|'.join(AUGMENT_PRESETS)}>" in train["--augment"]
    assert f"<{'|'.join(MIXES)}>" in train["--mix"]
    assert f"<{'|'.join(PRECISIONS)}>" in train["--precision"]
    preview = option_rows(wide_help("augment-preview"))
    assert f"<{'|'.join(AUGMENT_PRESETS)}>" in preview["--augment"]
    assert "[default: default]" in preview["--augment"]


def test_export_lists_the_export_formats():
    from imgrec.cli.deploy import EXPORT_FORMATS
    from imgrec.export import FORMATS

    assert EXPORT_FORMATS == FORMATS
    row = option_rows(wide_help("export"))["--format"]
    assert f"<{'|'.join(FORMATS)}>" in row and "[default: onnx]" in row


def test_train_defaults_come_from_the_config_and_the_families():
    epochs = family_default("epochs")
    assert epochs.startswith(f"{TrainConfig.epochs}; ")
    assert f"cnn-scratch: {SCRATCH_RECIPE['epochs']}" in epochs
    assert f"cnn-scratch: {SCRATCH_RECIPE['lr']:g}" in family_default("lr")
    assert family_default("label_smoothing") == f"{TrainConfig.label_smoothing:g}"
    rows = option_rows(wide_help("train"))
    for option, field in [
        ("--epochs", "epochs"),
        ("--lr", "lr"),
        ("--batch-size", "batch_size"),
        ("--patience", "patience"),
        ("--seed", "seed"),
        ("--augment", "augment"),
        ("--head", "head"),
    ]:
        assert squash(f"[default: {family_default(field)}]") in squash(rows[option]), option


# ---- out-of-range values: exit 2, one sentence in imgrec's words ---------------------------
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["predict", "m.imgrec", "a.jpg", "-k", "0"], "use 1 or more"),
        (["predict", "m.imgrec", "a.jpg", "--batch-size", "-1"], "use 1 or more"),
        (["evaluate", "m.imgrec", "data", "--batch-size", "0"], "use 1 or more"),
        (["calibrate", "m.imgrec", "data", "--batch-size", "0"], "use 1 or more"),
        (["train", "data", "--workers", "-1"], "use 0 or more"),
        (["train", "data", "--epochs", "-3"], "use 0 or more"),
        (["train", "data", "--batch-size", "0"], "use 1 or more"),
        (["train", "data", "--patience", "0"], "use 1 or more"),
        (["train", "data", "--dropout", "1"], "below 1"),
        (["train", "data", "--image-size", "8"], "from 32 to 1024"),
        (["train", "data", "--lr", "-1"], "above 0"),
        (["train", "data", "--lr", "fast"], "a number or 'auto'"),
        (["train", "data", "--seed", "-1"], "use 0 or more"),
        (["tune", "data", "--trials", "0"], "use 1 or more"),
        (["demo", "--epochs", "-1"], "use 0 or more"),
        (["lr-find", "data", "--steps", "0"], "use 1 or more"),
        (["serve", "m.imgrec", "--port", "70000"], "from 1 to 65535"),
        (["serve", "m.imgrec", "--max-upload-mb", "0"], "above 0"),
        (["serve", "m.imgrec", "--log-max-rows", "0"], "use 1 or more"),
        (["augment-preview", "data", "--views", "0"], "use 1 or more"),
        (["split", "data", "--seed", "-2"], "use 0 or more"),
        (["drift", "m.imgrec", "--current", "x", "--alpha", "1.5"], "below 1"),
        (["drift", "m.imgrec", "--current", "x", "--permutations", "5"], "or more"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_out_of_range_values_are_usage_errors(tmp_path, args, fragment):
    result = run_imgrec(*args, cwd=tmp_path)
    assert_usage_error(result, fragment, "out of range" if "auto" not in fragment else "")
    assert "Input should be" not in result.stderr  # pydantic's words, not ours
    assert list(tmp_path.iterdir()) == [], "a refused command left files behind"


def test_a_precision_the_machine_cannot_run_ends_before_any_work(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("fp16 runs on this GPU")
    data = make_class_dataset(tmp_path / "data", n=2)
    result = run_imgrec("train", str(data), "--out", "run", "--precision", "16", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert squash("--precision 16 needs a GPU; on a CPU use bf16 or 32.") in squash(result.stderr)
    assert not (tmp_path / "run").exists()


def test_retrain_lr_takes_what_train_takes_but_refuses_auto(tmp_path):
    auto = run_imgrec("retrain", tmp_path, "--new", tmp_path, "--lr", "auto")
    assert_usage_error(auto, "--lr", "fresh head", "a third of the original's")
    assert_usage_error(run_imgrec("retrain", tmp_path, "--new", tmp_path, "--lr", "0"), "above 0")
    assert_usage_error(run_imgrec("retrain", tmp_path, "--new", tmp_path, "--lr", "x"), "number")


# ---- renamed options: --out everywhere, --split on train and split -------------------------
def test_old_option_names_are_hidden_but_still_work(tmp_path):
    assert "--output" not in wide_help("predict") and "--out" in wide_help("predict")
    assert "--ratios" not in wide_help("split") and "--split" in wide_help("split")

    # --output still reaches the command (which then finds no model in the file): exit 1, not 2
    (tmp_path / "m.imgrec").write_text("not a model")
    old = run_imgrec("predict", tmp_path / "m.imgrec", "a.jpg", "--output", tmp_path / "p.csv")
    assert old.returncode == 1, old.stderr
    assert squash("--output is now called --out") in squash(old.stderr)
    both = run_imgrec("predict", tmp_path / "m.imgrec", "a.jpg", "-o", "a.csv", "--output", "b.csv")
    assert_usage_error(both, "--out")

    data = make_class_dataset(tmp_path / "data", n=2)
    assert_usage_error(run_imgrec("split", data, "--ratios", "1/2/3/4"), "--ratios", "70/15/15")
    assert_usage_error(run_imgrec("split", data, "--split", "1/2/3/4"), "--split", "70/15/15")


# ---- start-up: no heavy library for --help and `imgrec models` ------------------------------
@pytest.mark.parametrize(
    "args", [["--help"], ["models"], ["train", "--help"], ["predict", "--help"], ["--version"]]
)
def test_help_and_models_load_no_heavy_library(args):
    code = (
        "import sys\nfrom imgrec.cli import main\n"
        f"sys.argv = ['imgrec', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert "LOADED []" in result.stderr, result.stderr[-2000:]


def test_models_lists_what_the_registry_lists():
    from imgrec.cli.model import BACKBONES, OFFLINE_FACTS
    from imgrec.models.registry import SCRATCH_MODEL, list_models

    def weights(spec) -> str:
        if spec.name == SCRATCH_MODEL:
            return "none (--weights none)"
        return "yes" if spec.offline_weights else "download"

    assert list(BACKBONES) == [(s.name, s.input_size, weights(s)) for s in list_models()]
    result = run_imgrec("models")
    assert result.returncode == 0, result.stderr
    for name, size, _ in BACKBONES:
        assert re.search(rf"{name}\s+│\s+{size}", result.stdout), name
    offline = [s.name for s in list_models() if s.offline_weights]
    assert list(OFFLINE_FACTS) == offline  # size, accuracy and speed of each offline backbone
    for name, (params, size, top1, speed) in OFFLINE_FACTS.items():
        assert re.search(
            rf"{name}\s+│\s+{params}\s+│\s+{size}\s+│\s+{top1}\s+│\s+{speed}", result.stdout
        )
