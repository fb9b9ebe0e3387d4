"""Model registry, offline EfficientNet-Lite0 weights, and the hub-failure message."""

import huggingface_hub.constants
import pytest
import torch
from skimage.data import chelsea
from torchvision.transforms import v2

from imgrec.errors import ImgrecError
from imgrec.models import (
    backbone_parameters,
    create_model,
    forward_features,
    get_spec,
    head_parameters,
    list_models,
    num_features,
)
from imgrec.models.efficientnet_lite import imagenet_model, imagenet_state_dict
from imgrec.models.fast_features import onnx_feature_extractor


def test_default_spec_is_offline_lite0():
    spec = get_spec("efficientnet_lite0")
    assert spec.timm_name == "tf_efficientnet_lite0"
    assert (spec.input_size, spec.resize_size) == (256, 292)
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    assert spec.offline_weights


def test_timm_spec_comes_from_pretrained_cfg():
    spec = get_spec("resnet18")
    assert spec.timm_name == "resnet18" and not spec.offline_weights
    assert spec.input_size == 224
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert spec.resize_size == round(224 / 0.95)


@pytest.mark.parametrize("name", ["no_such_net", "resnet50.no_such_tag"])
def test_unknown_model_names_the_fix(name):
    with pytest.raises(ImgrecError, match="imgrec models.*efficientnet_lite0"):
        get_spec(name)


def test_list_models_offline_first():
    rows = list_models()
    assert rows[0].name == "efficientnet_lite0" and rows[0].offline_weights
    assert {"resnet18", "resnet50"} <= {r.name for r in rows}
    offline = [r.name for r in rows if r.offline_weights]
    assert offline == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert [r.name for r in rows[:3]] == offline  # the offline ones first
    matched = list_models("resnet18*")
    assert matched and all(r.name.startswith("resnet18") for r in matched)


def test_imagenet_weights_see_a_cat():
    image = torch.from_numpy(chelsea()).permute(2, 0, 1)
    preprocess = v2.Compose(
        [
            v2.Resize(256, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    with torch.inference_mode():
        logits = imagenet_model()(preprocess(image)[None])
    assert 281 <= int(logits.argmax()) <= 285  # the tabby / tiger / Egyptian cat classes


def test_create_model_loads_backbone_and_keeps_fresh_head():
    model = create_model(get_spec("efficientnet_lite0"), num_classes=2)
    state = model.state_dict()
    imagenet = imagenet_state_dict()
    for key, tensor in imagenet.items():
        if key.startswith("classifier."):
            continue
        assert torch.equal(state[key], tensor), key
    assert state["classifier.weight"].shape == (2, 1280)
    assert model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)

    scratch = create_model(get_spec("efficientnet_lite0"), num_classes=2, weights="none")
    assert not torch.equal(scratch.state_dict()["conv_stem.weight"], imagenet["conv_stem.weight"])


def test_parameter_split_and_features():
    model = create_model(get_spec("efficientnet_lite0"), num_classes=3, weights="none")
    head, backbone = head_parameters(model), backbone_parameters(model)
    assert [p.shape for p in head] == [(3, 1280), (3,)]
    assert len(head) + len(backbone) == len(list(model.parameters()))
    model.eval()
    with torch.inference_mode():
        features = forward_features(model, torch.zeros(2, 3, 64, 64))
    assert features.shape == (2, num_features(model)) == (2, 1280)


def test_unknown_weights_rejected():
    with pytest.raises(ImgrecError, match="imagenet, none"):
        create_model(get_spec("efficientnet_lite0"), num_classes=2, weights="coco")


def test_hub_download_failure_names_offline_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # huggingface_hub reads these at import time, so patch the live values too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ImgrecError, match="could not download.*'resnet18'.*efficientnet_lite0"):
        create_model(get_spec("resnet18"), num_classes=2)


@pytest.mark.parametrize("n", [1, 8, 11])
def test_onnx_features_match_pytorch_for_any_batch(n):
    """The fixed-batch ONNX graph pads short batches; the padding must never leak out."""
    model = create_model(get_spec("efficientnet_lite0"), num_classes=2)
    engine = onnx_feature_extractor(model, 96, batch_size=8)
    assert engine is not None and model.training  # export leaves the training mode as it was
    images = torch.randn(n, 3, 96, 96)
    model.eval()
    with torch.inference_mode():
        expected = forward_features(model, images)
    got = engine(images)
    assert got.shape == expected.shape == (n, 1280)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)


def test_features_all_in_the_store_need_no_export(monkeypatch):
    """A run whose every image's features are stored computes nothing, so it must not pay
    the feature graph's export (about a second) either. Here no image is left to compute
    because there is none: the same path as all of them found in the store."""
    from types import SimpleNamespace

    import imgrec.train.features as features
    from imgrec.data.preprocess import Preprocessing

    def no_export(*args, **kwargs):
        raise AssertionError("exported the feature graph for no image")

    monkeypatch.setattr(features, "onnx_feature_extractor", no_export)
    spec = get_spec("efficientnet_lite0")
    model = create_model(spec, num_classes=2)
    prep = Preprocessing(spec.input_size, spec.mean, spec.std, spec.resize_size)
    stored = features.backbone_features(model, spec.name, "none", prep, progress=False)
    with stored:
        nothing_left = SimpleNamespace(valid_indices=[])
        assert stored(nothing_left, "features (train)").shape == (0, 1280)
