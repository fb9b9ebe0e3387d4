"""Hyper-parameter search (resumable from SQLite) and the learning-rate range test."""

from __future__ import annotations

import csv
import sqlite3

import pytest
from runhelpers import (
    assert_user_error,
    epochs_by_phase,
    make_split_dataset,
    run_imgrec,
    signal_when,
    squash,
    start_imgrec,
)

from imgrec.api import ImageClassifier, load_dataset
from imgrec.errors import ImgrecError
from imgrec.runs.tune import PruningReport, default_params, open_study, tune
from imgrec.train.lr_find import find_lr, plot_lr


def _trials_in(db) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from trials").fetchone()[0]


def test_search_runs_defaults_first_saves_the_best_and_resumes(tmp_path):
    data = make_split_dataset(tmp_path / "data", n_train=6, n_val=3)
    folder = tmp_path / "tune"
    result = tune(data, folder, trials=2, epochs=1, progress=False)
    assert result.finished + result.pruned + result.failed == 2
    assert _trials_in(folder / "study.db") == 2
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    first = {k.removeprefix("params_"): v for k, v in rows[0].items() if k.startswith("params_")}
    assert first["augment"] == default_params("efficientnet_lite0")["augment"]
    assert float(first["lr"]) == pytest.approx(default_params("efficientnet_lite0")["lr"])
    best = ImageClassifier.load(result.best_model)
    assert best.metadata["tune"]["params"] == result.best_params
    assert result.best_value >= result.default_value
    assert (folder / "report.html").exists() and (folder / "history.png").exists()
    # a second call continues the same study: one more trial, not three
    again = tune(None, folder, trials=3, epochs=1, progress=False)
    assert _trials_in(folder / "study.db") == 3
    assert again.best_value >= result.best_value


def _study_with_completed_trials(best_by_epoch: list[list[float]]):
    import optuna

    study = open_study(None)
    for values in best_by_epoch:
        study.add_trial(
            optuna.trial.create_trial(
                params={},
                distributions={},
                value=max(values),
                intermediate_values=dict(enumerate(values, start=1)),
            )
        )
    return study


def _row(phase: str, score: float) -> dict:
    return {"phase": phase, "val_score": score}


def test_pruning_judges_fine_tuning_by_its_best_so_far_not_by_the_head():
    import optuna

    study = _study_with_completed_trials([[0.90, 0.95, 0.96]] * 3)
    trial = study.ask()
    report = PruningReport(trial)
    for _ in range(6):  # a head that beats every fine-tuning epoch must not shield the trial
        report(_row("head", 0.99))
    report(_row("finetune", 0.80))  # epoch 1 is warm-up: never pruned
    report(_row("finetune", 0.95))  # at the median of epoch 2: kept
    assert study.trials[-1].intermediate_values == {1: 0.80, 2: 0.95}
    with pytest.raises(optuna.TrialPruned, match="after 3 fine-tuning epochs"):
        report(_row("finetune", 0.70))  # best so far 0.95, below the median 0.96 at epoch 3


def test_a_trial_reports_what_it_has_reached_so_later_trials_meet_that():
    study = _study_with_completed_trials([[0.90, 0.95], [0.91, 0.93], [0.92, 0.97]])
    trial = study.ask()
    report = PruningReport(trial)
    report(_row("finetune", 0.96))
    report(_row("finetune", 0.80))  # a worse epoch does not lower what the trial has reached
    assert study.trials[-1].intermediate_values == {1: 0.96, 2: 0.96}


def test_ctrl_c_in_a_trial_then_the_same_command_continues(tmp_path):
    """Ctrl-C while trial 1 fine-tunes: exit 130 in one line, no traceback; trial 0 is kept
    and the same command runs the trials still to do, the interrupted one again."""
    data = make_split_dataset(tmp_path / "data", n_train=4, n_val=2)
    folder = tmp_path / "tune"
    command = ["tune", data, "--trials", "3", "--epochs", "3", "--out", folder, "-q"]
    log = tmp_path / "stderr.txt"
    history = folder / "trials" / "001" / "history.csv"
    code = signal_when(
        start_imgrec(*command, log=log),
        lambda: history.exists() and "finetune" in epochs_by_phase(history),
        "trial 1's first fine-tuning epoch",
        log,
    )
    stderr = log.read_text(errors="replace")
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert squash("Continue with the same command") in squash(stderr)
    again = run_imgrec(*command)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert squash("1 trials done before, 2 to run") in squash(again.stderr)
    states = [row["state"] for row in csv.DictReader((folder / "trials.csv").open())]
    assert states[0] == "COMPLETE" and states[1] == "FAIL" and len(states) == 4
    assert (folder / "best.imgrec").is_file()


def test_search_refuses_families_it_cannot_search(tmp_path):
    data = make_split_dataset(tmp_path / "data", n_train=4, n_val=2)
    with pytest.raises(ImgrecError, match="transfer-learning"):
        tune(data, tmp_path / "t", trials=1, backbones=["svm-hog"], progress=False)


def test_lr_range_test_suggests_a_rate_within_its_range(tmp_path):
    data = load_dataset(make_split_dataset(tmp_path / "data", n_train=8, n_val=2))
    clf = ImageClassifier("efficientnet_lite0", image_size=64, batch_size=4)
    finding = find_lr(
        clf,
        data.subset("train"),
        data.subset("val"),
        steps=16,
        min_lr=1e-5,
        max_lr=1e-3,
        progress=False,
    )
    assert 1e-5 <= finding.suggestion <= 1e-3
    assert len(finding.lrs) == len(finding.losses) > 3
    assert finding.lrs == sorted(finding.lrs)
    assert plot_lr(finding, tmp_path / "lr.png").stat().st_size > 1000


def test_cli_tune_and_lr_find_errors(tmp_path):
    data = make_split_dataset(tmp_path / "data", n_train=4, n_val=2)
    assert_user_error(run_imgrec("lr-find", data, "--model", "svm-hog"), "no learning rate")
    assert_user_error(run_imgrec("tune", "--out", tmp_path / "empty"), "DATA")
    not_tunable = run_imgrec("tune", data, "--models", "svm-hog", "--out", tmp_path / "t")
    assert_user_error(not_tunable, "transfer-learning")


def test_ctrl_c_is_remembered_even_where_python_drops_the_exception(capsys):
    import gc
    import os
    import signal

    from imgrec.runs.tune import CtrlC

    before = signal.getsignal(signal.SIGINT)

    class PressedWhileCollected:
        def __del__(self):  # CPython prints "Exception ignored in" and goes on
            os.kill(os.getpid(), signal.SIGINT)

    with CtrlC() as ctrl_c:
        PressedWhileCollected()
        gc.collect()
        assert ctrl_c.pressed  # the objective stops the search after this trial
    assert "Traceback" not in capsys.readouterr().err  # no "Exception ignored" report
    with pytest.raises(KeyboardInterrupt), CtrlC() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
    assert ctrl_c.pressed
    assert signal.getsignal(signal.SIGINT) is before
