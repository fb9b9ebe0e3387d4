"""MixUp / CutMix and class balance: settings, the weighted losses and sampler, real runs.

The unit tests work on toy tensors (milliseconds). The two runs at the end are real CLI
trainings on tiny generated, imbalanced images (seconds each, marked slow like the other
end-to-end tests); one is interrupted and resumed, since the settings must survive that.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from imagegen import make_class_folder
from runhelpers import epochs_by_phase, run_imgrec, signal_when, squash, start_imgrec
from torch import nn

from imgrec.bundle.format import read_metadata
from imgrec.config import TrainConfig
from imgrec.errors import ImgrecError
from imgrec.train.finetune import balanced_sampler
from imgrec.train.head import class_weights, fit_head
from imgrec.train.module import FineTuneModule


# ---- settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"mix": "blend"}, "unknown mix 'blend'; use one of none, mixup, cutmix, both"),
        ({"balance": "oversample"}, "use one of none, weights, sampler"),
        ({"mix_alpha": 0.0}, "invalid value 0.0 for mix_alpha"),
    ],
)
def test_config_rejects_bad_mix_and_balance(setting, message):
    with pytest.raises(ImgrecError, match=message):
        TrainConfig(**setting)


def test_config_defaults_and_round_trip():
    default = TrainConfig()
    assert (default.mix, default.mix_alpha, default.balance) == ("none", 1.0, "none")
    config = TrainConfig(mix="both", mix_alpha=0.4, balance="sampler")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = {k: v for k, v in config.to_dict().items() if k not in ("mix", "mix_alpha", "balance")}
    assert TrainConfig.from_dict(old) == TrainConfig()  # config.json from before these options


# ---- class weights, sampler, weighted head fit ------------------------------------------------
def test_class_weights_are_inverse_frequency_with_mean_one():
    weights = class_weights([0] * 30 + [1] * 10 + [2] * 20, 3)
    assert torch.allclose(weights.mean(), torch.tensor(1.0))
    assert torch.allclose(weights * torch.tensor([30.0, 10.0, 20.0]), torch.full((3,), 180 / 11))
    absent = class_weights([0, 0, 2], 3)
    assert absent[1] == 0 and torch.allclose(absent[[0, 2]].mean(), torch.tensor(1.0))


def test_sampler_draws_the_minority_class_as_often_as_the_majority():
    targets = [0] * 90 + [1] * 10
    sampler = balanced_sampler(targets, 2, torch.Generator().manual_seed(0))
    assert len(sampler) == len(targets)  # an epoch is still one pass's worth of images
    drawn = [targets[i] for _ in range(20) for i in sampler]
    share = Counter(drawn)[1] / len(drawn)
    assert 0.45 < share < 0.55, share
    again = balanced_sampler(targets, 2, torch.Generator().manual_seed(0))
    assert list(again) == list(balanced_sampler(targets, 2, torch.Generator().manual_seed(0)))


def _blobs(n0: int, n1: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two overlapping 2-D Gaussian classes centred at x = -1 and x = +1."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n0, 2, generator=g) + torch.tensor([-1.0, 0.0])
    x1 = torch.randn(n1, 2, generator=g) + torch.tensor([1.0, 0.0])
    return torch.cat([x0, x1]), torch.tensor([0] * n0 + [1] * n1)


def test_weighted_head_fit_moves_the_boundary_towards_the_majority():
    train_x, train_y = _blobs(300, 15, seed=0)
    val_x, val_y = _blobs(100, 100, seed=1)
    probe = torch.tensor([[0.3, 0.0]])  # nearer the minority centre, in the overlap
    decisions, recalls = {}, {}
    for name, weight in {"plain": None, "weighted": class_weights(train_y, 2)}.items():
        head = nn.Linear(2, 2)
        fit_head(head, train_x, train_y, val_x, val_y, class_weight=weight)
        with torch.no_grad():
            decisions[name] = int(head(probe).argmax(1))
            predicted = head(val_x).argmax(1)
        recalls[name] = float((predicted[val_y == 1] == 1).float().mean())
    assert decisions == {"plain": 0, "weighted": 1}
    assert recalls["weighted"] > recalls["plain"] + 0.2, recalls


# ---- the fine-tuning step -------------------------------------------------------------------
class TinyNet(nn.Module):
    """The two things FineTuneModule asks of a timm model: forward and get_classifier."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, classes)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))

    def get_classifier(self):
        return self.fc


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight noisy images whose colour follows the class, so logits differ per image (with
    identical logits, mixing would only permute the targets and leave the loss unchanged)."""
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    colour = 3 * nn.functional.one_hot(y, 3).float()[:, :, None, None]
    return torch.randn(8, 3, 16, 16) + colour, y


def _step(config: TrainConfig, weight=None, seed: int = 0) -> tuple[torch.Tensor, FineTuneModule]:
    torch.manual_seed(seed)
    module = FineTuneModule(TinyNet(), config, 10, freeze_bn=True, class_weight=weight)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*self.log.*")  # no Trainer attached here
        return module.training_step(_batch(), 0), module


def test_training_step_without_mix_or_weights_is_smoothed_cross_entropy():
    config = TrainConfig(label_smoothing=0.1)
    loss, module = _step(config)
    torch.manual_seed(0)
    model = TinyNet()
    x, y = _batch()
    expected = nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
    assert torch.allclose(loss, expected)
    assert module.mix is None


@pytest.mark.parametrize("mix", ["mixup", "cutmix", "both"])
def test_training_step_with_mix_uses_soft_targets(mix):
    plain, _ = _step(TrainConfig())
    mixed, module = _step(TrainConfig(mix=mix))
    assert module.mix is not None
    assert torch.isfinite(mixed) and not torch.allclose(mixed, plain)
    mixed.backward()  # soft targets, label smoothing and weights all differentiable
    assert module.model.fc.weight.grad is not None


def test_training_step_weights_change_the_loss_but_not_the_checkpoint():
    weight = torch.tensor([0.5, 1.0, 1.5])
    plain, plain_module = _step(TrainConfig())
    weighted, module = _step(TrainConfig(balance="weights"), weight)
    assert not torch.allclose(weighted, plain)
    assert torch.equal(module.class_weight, weight)
    _, both = _step(TrainConfig(mix="both", balance="weights"), weight)
    for other in (module, both):  # the checkpoint holds the same tensors: resume-compatible
        assert set(other.state_dict()) == set(plain_module.state_dict())


# ---- real runs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """A 4:1 imbalanced folder of tiny generated images: 20 'common', 5 'rare'."""
    root = tmp_path_factory.mktemp("imbalanced") / "data"
    return make_class_folder(root, {"common": 20, "rare": 5}, size=(64, 48))


def _assert_saved_with(run: Path, **settings) -> None:
    assert (run / "model.imgrec").is_file()
    saved = json.loads((run / "config.json").read_text())
    restored = TrainConfig.from_dict(saved)
    model_config = read_metadata(run / "model.imgrec")["config"]
    for key, value in settings.items():
        assert saved[key] == value and getattr(restored, key) == value, key
        assert model_config[key] == value, key


@pytest.mark.slow
def test_balance_weights_trains_and_records_the_setting(imbalanced, tmp_path):
    run = tmp_path / "run"
    result = run_imgrec(
        "train", imbalanced, "--out", run, "--balance", "weights", "--epochs", "1",
        "--batch-size", "4", "-q",
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    _assert_saved_with(run, balance="weights", mix="none")
    assert epochs_by_phase(run / "history.csv")["finetune"] == [1]


@pytest.mark.slow
def test_cutmix_with_sampler_survives_interrupt_and_resume(imbalanced, tmp_path):
    """Ctrl-C in fine-tuning epoch 2, then `--resume`: the mix and balance settings come back
    from config.json, the sampler and CutMix run again, and the run completes."""
    run = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    args = ["train", imbalanced, "--out", run, "--mix", "cutmix", "--balance", "sampler"]
    args += ["--batch-size", "4", "--epochs", "3", "--patience", "5", "-q"]
    process = start_imgrec(*args, log=log)
    history = run / "checkpoints" / "history.csv"

    def epoch_one_checkpointed() -> bool:
        finetuned = epochs_by_phase(history).get("finetune", [])
        return 1 in finetuned and (run / "checkpoints" / "last.ckpt").exists()

    code = signal_when(process, epoch_one_checkpointed, "finetune epoch 1", log)
    assert code == 130, log.read_text()
    assert squash(f"imgrec train --resume {run}") in squash(log.read_text())
    assert not (run / "model.imgrec").exists(), "the run finished before the interrupt"

    result = run_imgrec("train", "--resume", run, "-q")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    _assert_saved_with(run, mix="cutmix", balance="sampler", mix_alpha=1.0)
    assert epochs_by_phase(run / "history.csv")["finetune"] == [1, 2, 3]
