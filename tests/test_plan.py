"""The default decides whether fine-tuning can pay (train/plan.py), on measured step times
(train/steptime.py), and stops fine-tuning that cannot beat the head."""

from __future__ import annotations

import pytest
import torch

from imgrec.config import TrainConfig
from imgrec.models.families import train_config
from imgrec.train.plan import DEFAULT_FINETUNE_BUDGET, MIN_ERRORS, decide, errors_left


def test_too_few_errors_left_skips_fine_tuning_whatever_the_time():
    epochs, reason = decide(0.997, 300, epoch_seconds=10, seconds_left=3600, max_epochs=6)
    assert epochs == 0
    assert reason == (
        "head reached 99.7% on the 300 validation images; fine-tuning skipped: 1 error left "
        "to fix, too few to tell a better model from chance"
    )
    # five errors fixed and none broken: exact two-sided McNemar p = 2 * 0.5**5 > 0.05
    assert 2 * 0.5**5 > 0.05 > 2 * 0.5**MIN_ERRORS
    assert errors_left(1 - 5 / 300, 300) == 5
    assert decide(1 - 5 / 300, 300, 10, 3600, 6)[0] == 0
    assert decide(1 - 6 / 300, 300, 10, 3600, 6)[0] == 6
    assert "skipped: no error left to fix" in decide(1.0, 40, 10, 3600, 6)[1]


def test_epochs_are_what_the_time_allows_up_to_the_epochs_setting():
    epochs, reason = decide(1 - 39 / 550, 550, epoch_seconds=120, seconds_left=400, max_epochs=6)
    assert epochs == 3
    assert reason == (
        "fine-tuning 3 epochs, about 6 min (head: 92.9% on 550 validation images, 39 errors left)"
    )
    assert decide(0.8, 100, epoch_seconds=1, seconds_left=3600, max_epochs=4)[0] == 4
    assert "1 epoch, about 50 s" in decide(0.8, 100, 50, 60, 6)[1]


def test_an_epoch_longer_than_the_budget_skips_fine_tuning_and_says_how_to_allow_it():
    epochs, reason = decide(0.9, 300, 780, DEFAULT_FINETUNE_BUDGET, 6)
    assert epochs == 0
    assert reason == (
        "one fine-tuning epoch would take about 13 min, more than the 5 min budget; give "
        "--time-limit to allow more (or --epochs N to fine-tune anyway)"
    )
    epochs, reason = decide(0.9, 300, 780, 240, 6, time_limited=True)
    assert epochs == 0 and "the 4 min the time limit leaves; give a longer --time-limit" in reason
    assert decide(0.9, 300, 780, -50, 6, time_limited=True)[0] == 0  # already past it


def test_the_default_budget_is_minutes():
    assert 60 <= DEFAULT_FINETUNE_BUDGET <= 600


def test_epochs_given_turn_auto_off_unless_auto_is_given_too():
    assert train_config("efficientnet_lite0").auto_finetune
    assert not train_config("efficientnet_lite0", epochs=3).auto_finetune
    assert train_config("efficientnet_lite0", epochs=3, auto_finetune=True).auto_finetune
    assert train_config("efficientnet_lite0", epochs=None).auto_finetune  # None: not given
    from imgrec.classifier import ImageClassifier

    assert not ImageClassifier(epochs=2).config.auto_finetune
    assert ImageClassifier().config.auto_finetune
    # a saved config (both given) keeps what it says
    again = ImageClassifier(**{k: v for k, v in TrainConfig().to_dict().items()})
    assert again.config.auto_finetune and again.config.epochs == 6


def test_auto_applies_only_after_a_head_phase_of_a_pretrained_network():
    from imgrec.train.fit import auto_applies

    head = [{"phase": "head", "epoch": 1}]
    assert auto_applies(TrainConfig(), head)
    assert not auto_applies(TrainConfig(), [])  # --no-head, or a retrain's seeded epoch
    assert not auto_applies(TrainConfig(auto_finetune=False), head)
    assert not auto_applies(train_config("cnn-scratch"), head)
    assert not auto_applies(train_config("mlp-embed"), head)


def _tiny_network():
    from imgrec.models.registry import create_model, get_spec

    torch.manual_seed(0)
    return create_model(get_spec("efficientnet_lite0"), 2, "none")


def test_timing_steps_leaves_the_weights_flags_and_gradients_as_they_were():
    from imgrec.train.steptime import measure_steps

    model = _tiny_network()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]

    def batch(k: int):
        g = torch.Generator().manual_seed(k)
        return torch.randn(4, 3, 64, 64, generator=g), torch.tensor([0, 1, 0, 1])

    times = measure_steps(model, batch, batch, 4, freeze_stride=8, label_smoothing=0.1)
    assert times.train_step > 0 and times.eval_batch > 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert [p.requires_grad for p in model.parameters()] == flags  # early layers unfrozen again
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    # one epoch: every training batch and the validation pass
    assert times.epoch_seconds(10, 5) == pytest.approx(3 * times.train_step + 2 * times.eval_batch)
    assert times.eval_seconds(0) == 0.0


def test_fine_tuning_stops_at_the_first_epoch_that_does_not_beat_the_best(tmp_path):
    from imgrec.train.callbacks import KeepBestAndHistory
    from imgrec.train.state import RunState

    state = RunState(tmp_path)
    model = _tiny_network()
    state.save_best(model.state_dict(), {"phase": "head", "epoch": 6, "val_score": 0.80})

    class Trainer:
        sanity_checking = False
        is_global_zero = True
        should_stop = False
        current_epoch = 0
        optimizers = [torch.optim.SGD(model.parameters(), lr=0.1)]
        callback_metrics: dict = {}

    class Module:
        pass

    module = Module()
    module.model = model
    trainer = Trainer()
    keep = KeepBestAndHistory(state, 0.0, stop_unless_better=True, best_score=0.80)
    for epoch, score in enumerate((0.85, 0.84), start=1):
        trainer.current_epoch = epoch - 1
        trainer.callback_metrics = {
            "val_score": torch.tensor(score),
            "val_loss": torch.tensor(0.3),
            "val_acc": torch.tensor(score),
        }
        keep.on_train_epoch_end(trainer, module)
        assert trainer.should_stop == (epoch == 2)
    assert state.best()["epoch"] == 1 and state.best()["phase"] == "finetune"
    # a first epoch below the head stops at once, and the head stays the best
    state.save_best(model.state_dict(), {"phase": "head", "epoch": 6, "val_score": 0.90})
    trainer.should_stop = False
    keep = KeepBestAndHistory(state, 0.0, stop_unless_better=True, best_score=0.90)
    keep.on_train_epoch_end(trainer, module)
    assert trainer.should_stop and state.best()["phase"] == "head"


def _noise_dataset(root, n_train: int = 24, n_val: int = 20):
    """Two classes of the same noise: a head cannot tell them apart, so it leaves errors."""
    import numpy as np
    from PIL import Image

    from imgrec.data.dataset import load_dataset

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for label in ("a", "b"):
            for i in range(n):
                path = root / split / label / f"{label}_{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(path)
    data = load_dataset(root)
    return data.subset("train"), data.subset("val")


@pytest.mark.slow
def test_the_default_measures_plans_and_stops_fine_tuning_that_does_not_beat_the_best(tmp_path):
    from imgrec.classifier import ImageClassifier

    train, val = _noise_dataset(tmp_path / "data")
    reasons: list[str] = []
    clf = ImageClassifier(image_size=64, batch_size=8)
    clf.fit(train, val, progress=False, work_dir=tmp_path / "work", on_plan=reasons.append)
    finetune = clf.metadata["phases"]["finetune"]
    plan = finetune["plan"]
    assert plan["auto"] and plan["errors_left"] >= 6 and plan["epoch_seconds"] > 0
    assert reasons == [plan["reason"]] and plan["reason"].startswith("fine-tuning ")
    assert 1 <= plan["epochs"] <= 6
    scores = [row["val_score"] for row in clf.history if row["phase"] == "finetune"]
    assert 1 <= len(scores) <= plan["epochs"]
    best = max(row["val_score"] for row in clf.history if row["phase"] == "head")
    for score in scores[:-1]:  # every epoch but the last beat the best so far
        assert score > best
        best = score
    if len(scores) < plan["epochs"]:  # stopped early: the last epoch did not beat it
        assert scores[-1] <= best
    assert finetune["epochs"] == len(scores) and finetune["seconds"] > 0
    assert clf.metadata["phases"]["head"]["val_acc"] <= 1


@pytest.mark.slow
def test_a_time_limit_spent_before_fine_tuning_skips_it_and_says_so(tmp_path):
    import time

    from imgrec.classifier import ImageClassifier

    train, val = _noise_dataset(tmp_path / "data")
    reasons: list[str] = []
    clf = ImageClassifier(image_size=64, batch_size=8, time_limit=100.0)
    started = time.perf_counter() - 99.0  # the run before the fit took almost all of it
    clf.fit(train, val, progress=False, started=started, eval_images=10, on_plan=reasons.append)
    plan = clf.metadata["phases"]["finetune"]["plan"]
    assert plan["epochs"] == 0 and plan["reserve_seconds"] > 0
    assert "the time limit leaves; give a longer --time-limit" in reasons[0]
    assert not [row for row in clf.history if row["phase"] == "finetune"]
    assert clf.metadata["best_epoch"]["phase"] == "head"


def test_the_cards_reproduce_command_keeps_a_planned_run_planned():
    from pathlib import Path

    from imgrec.monitor.card import reproduce_command

    def command(config: TrainConfig) -> str:
        return reproduce_command({**config.to_dict(), "source": "photos"}, Path("runs/x"))

    planned = command(TrainConfig())
    assert "--epochs" not in planned and "auto_finetune" not in planned
    asked = command(train_config("efficientnet_lite0", epochs=3))
    assert "--epochs 3" in asked and "auto_finetune" not in asked
    bound = command(TrainConfig(epochs=3))  # planned, at most 3 epochs (set in Python)
    assert "--epochs" not in bound and "epochs=3, auto_finetune=True" in bound
    scratch = command(train_config("cnn-scratch"))
    assert "--epochs" not in scratch and "epochs=" not in scratch  # the family's own


@pytest.mark.slow
def test_imgrec_train_says_what_it_decided_and_records_the_phases(tmp_path):
    import json

    from runhelpers import make_split_dataset, run_imgrec

    data = make_split_dataset(tmp_path / "data")
    run = tmp_path / "run"
    result = run_imgrec("train", data, "--out", run, "-q")
    assert result.returncode == 0, result.stderr
    assert "fine-tuning skipped:" in result.stderr and "too few to tell" in result.stderr
    phases = json.loads((run / "metrics.json").read_text())["phases"]
    assert list(phases) == ["decode_audit", "head", "finetune", "evaluation"]
    assert all(phase["seconds"] >= 0 for phase in phases.values())
    assert phases["finetune"]["epochs"] == 0 and phases["finetune"]["plan"]["auto"]
    report = (run / "report.html").read_text()
    assert "Training phases" in report and "fine-tuning skipped:" in report
    card = (run / "model_card.md").read_text()
    assert "Head on frozen features" in card and "Fine-tuning" in card
    assert "--epochs" not in card  # the reproduce command keeps the plan on
