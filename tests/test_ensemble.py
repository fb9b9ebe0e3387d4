"""Backbones joined with '+' (`--preset best`): one input, joined features, one head, and a
model file that every engine runs like any other."""

from __future__ import annotations

import pytest
import torch
from runhelpers import (
    assert_engines_agree,
    assert_user_error,
    make_split_dataset,
    run_imgrec,
)

from imgrec.bundle.format import load_bundle
from imgrec.errors import ImgrecError
from imgrec.models import create_model, get_spec
from imgrec.models.ensemble import BackboneEnsemble
from imgrec.models.families import BEST_ENSEMBLE, get_family, preset_config, train_config

PAIR = "efficientnet_lite0+efficientnet_lite2"


def test_spec_takes_the_largest_input_and_the_shared_normalisation():
    spec = get_spec(PAIR)
    assert spec.family == "ensemble" and spec.offline_weights
    assert (spec.input_size, spec.resize_size) == (260, 292)  # Lite2's; Lite0's is 256/292
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    assert spec.timm_name == "tf_efficientnet_lite0+tf_efficientnet_lite2"
    assert get_family(PAIR).kind == "ensemble"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("efficientnet_lite0+", "join two or more backbones"),
        ("svm-hog+efficientnet_lite0", "join two or more backbones"),
        ("efficientnet_lite0+resnet18", "different input normalisation"),
        ("efficientnet_lite0+no_such_net", "unknown model 'no_such_net'"),
    ],
)
def test_names_that_are_not_buildable_ensembles_are_refused(name, fragment):
    with pytest.raises(ImgrecError, match=fragment):
        get_spec(name)


def test_members_start_from_imagenet_and_features_join_in_order():
    model = create_model(get_spec(PAIR), num_classes=3).eval()
    assert isinstance(model, BackboneEnsemble)
    x = torch.rand(2, 3, 260, 260)
    with torch.no_grad():
        joined = model.forward_head(model.forward_features(x), pre_logits=True)
        first = model.members[0].forward_head(model.members[0].forward_features(x), True)
        logits = model(x)
    assert joined.shape == (2, 2560) and model.num_features == 2560
    torch.testing.assert_close(joined[:, :1280], first)
    assert logits.shape == (2, 3) and model.get_classifier().in_features == 2560
    from imgrec.models.efficientnet_lite import imagenet_state_dict

    stem = imagenet_state_dict("tf_efficientnet_lite2")["conv_stem.weight"]
    assert torch.equal(model.members[1].conv_stem.weight, stem)


def test_an_ensemble_trains_its_head_only():
    config = train_config(PAIR)
    assert config.epochs == 0 and config.head and config.weights == "imagenet"
    for given in ({"epochs": 2}, {"weights": "none"}, {"head": False}):
        with pytest.raises(ImgrecError, match="frozen ImageNet features only"):
            train_config(PAIR, **given)


def test_presets_and_what_overrides_them():
    assert preset_config("fast").model == "efficientnet_lite0"
    assert preset_config("fast").epochs == 0
    default = preset_config()
    assert default.model == "efficientnet_lite0" and default.epochs > 0
    assert preset_config("best").model == BEST_ENSEMBLE
    assert preset_config("best", "efficientnet_lite2").model == "efficientnet_lite2"
    assert preset_config("fast", "efficientnet_lite2").epochs == 0
    assert preset_config("fast", epochs=3).epochs == 3
    with pytest.raises(ImgrecError, match="unknown preset 'quick'"):
        preset_config("quick")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_split_dataset(tmp_path_factory.mktemp("ensemble-data"), n_train=4, n_val=2)


@pytest.mark.slow
def test_a_trained_ensemble_predicts_the_same_on_every_engine(data, tmp_path):
    out = tmp_path / "run"
    trained = run_imgrec("train", data, "--model", PAIR, "--no-audit", "-q", "--out", out)
    assert trained.returncode == 0, trained.stderr[-2000:]
    model = out / "model.imgrec"
    _, metadata = load_bundle(model)
    assert metadata["model"] == PAIR
    assert metadata["preprocessing"]["input_size"] == 260
    assert_engines_agree(model)
    refused = run_imgrec("train", data, "--model", PAIR, "--epochs", "2", "--out", tmp_path / "x")
    assert_user_error(refused, "frozen ImageNet features only")


def test_a_time_limit_keeps_the_members_whose_passes_fit(monkeypatch):
    from imgrec.train import ensemble_budget

    timed = []
    monkeypatch.setattr(
        ensemble_budget, "seconds_per_image", lambda member, size: timed.append(member) or 0.01
    )
    roomy = ensemble_budget.members_within(BEST_ENSEMBLE, 1000, 900)
    assert roomy == ensemble_budget.EnsembleChoice(BEST_ENSEMBLE, None)
    assert timed == ["efficientnet_lite0"]  # Lite1 and Lite2 are costed relative to it
    # 1.6 passes x 1000 images x 0.01 s x (1, 1.28, 1.40): 16 + 20.5 + 22.4 s of passes,
    # against 60% of the limit (39 s)
    two = ensemble_budget.members_within(BEST_ENSEMBLE, 1000, 65)
    assert two.model == "efficientnet_lite0+efficientnet_lite1"
    assert "left out: efficientnet_lite2" in two.reason
    one = ensemble_budget.members_within(BEST_ENSEMBLE, 1000, 1)  # Lite0 stays, always
    assert one.model == "efficientnet_lite0"
    assert "left out: efficientnet_lite1, efficientnet_lite2" in one.reason


def test_a_member_is_timed_on_this_machine():
    from imgrec.train.ensemble_budget import seconds_per_image

    assert 0 < seconds_per_image("efficientnet_lite0", 64) < 1


@pytest.mark.slow
def test_best_under_a_short_time_limit_trains_the_members_that_fit(data, tmp_path):
    out = tmp_path / "run"
    result = run_imgrec(
        "train", data, "--preset", "best", "--time-limit", "0.1s", "--no-audit", "--out", out
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "left out: efficientnet_lite1, efficientnet_lite2" in " ".join(result.stderr.split())
    _, metadata = load_bundle(out / "model.imgrec")
    assert metadata["model"] == "efficientnet_lite0"
    assert metadata["config"]["time_limit"] == 0.1
