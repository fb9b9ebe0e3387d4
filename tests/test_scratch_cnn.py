"""The from-scratch CNN family (`cnn-scratch`): built through the registry like any timm model,
with the interface the rest of imgrec relies on, and exportable to ONNX. Tiny inputs, no data."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch

from imgrec.errors import ImgrecError
from imgrec.export.onnx_export import export_onnx_bytes
from imgrec.models import anatomy, registry
from imgrec.models.families import get_family, train_config
from imgrec.models.scratch_cnn import TIMM_NAME


@pytest.fixture(scope="module")
def model():
    spec = registry.get_spec("cnn-scratch")
    torch.manual_seed(0)
    return registry.create_model(spec, 3, weights="none", drop_rate=0.2).eval()


def test_spec_is_a_scratch_model():
    spec = registry.get_spec("cnn-scratch")
    assert spec.timm_name == TIMM_NAME and not spec.offline_weights
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    assert spec.resize_size > spec.input_size
    assert "cnn-scratch" in [s.name for s in registry.list_models()]
    config = train_config("cnn-scratch")  # the family's recipe is valid settings
    assert (
        config.weights == "none" and not config.head and get_family(config.model).kind == "scratch"
    )


def test_timm_builds_it_by_name():
    net = timm.create_model(TIMM_NAME, pretrained=False, num_classes=5, drop_rate=0.1)
    assert net.get_classifier().out_features == 5
    assert net.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)


def test_forward_and_features(model):
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        logits = model(x)
        features = anatomy.forward_features(model, x)
    assert logits.shape == (2, 3)
    assert features.shape == (2, anatomy.num_features(model))
    assert model.get_classifier().in_features == anatomy.num_features(model)
    assert torch.allclose(model.forward_head(model.forward_features(x)), logits, atol=1e-5)


def test_feature_info_names_real_modules(model):
    names = dict(model.named_modules())
    reductions = [f["reduction"] for f in model.feature_info]
    assert all(f["module"] in names for f in model.feature_info)
    assert reductions == sorted(reductions) and model.feature_info[-1]["reduction"] == 32
    assert model.feature_info[-1]["num_chs"] == model.num_features


def test_reset_classifier(model):
    net = registry.create_model(registry.get_spec("cnn-scratch"), 2, weights="none")
    net.reset_classifier(7)
    assert net.get_classifier().out_features == 7


def test_imagenet_weights_are_refused():
    with pytest.raises(ImgrecError, match="--weights none"):
        registry.create_model(registry.get_spec("cnn-scratch"), 2, weights="imagenet")


def test_onnx_export_matches_torch(model):
    data = export_onnx_bytes(model, 64)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.softmax(model(x), 1).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_time_limited_training(tmp_path):
    """`--time-limit` stops a long schedule on the clock and keeps the best epoch."""
    from runhelpers import SAMPLE, read_csv, run_imgrec

    result = run_imgrec(
        "train", SAMPLE, "--model", "cnn-scratch", "--image-size", "32", "--augment", "light",
        "--epochs", "500", "--patience", "500", "--time-limit", "12s", "--no-audit",
        "--out", tmp_path / "run", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "run" / "history.csv")
    assert 1 <= len(rows) < 500
    assert float(rows[-1]["seconds"]) < 12 + 10  # the last epoch may finish past the limit
    assert (tmp_path / "run" / "model.imgrec").exists()
    bad = run_imgrec("train", SAMPLE, "--time-limit", "soon", "--out", tmp_path / "bad", "-q")
    assert bad.returncode != 0 and "cannot read the duration 'soon'" in bad.stderr


def test_predictions_average_the_image_and_its_mirror(model):
    """In eval mode the network answers the same for an image and its mirror image (it averages
    both views); in training it sees one view, as augmented."""
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), model(torch.flip(x, dims=(3,))), atol=1e-5)
        single = model.forward_head(model.stages(model.stem(x)))
        mirrored = model.forward_head(model.stages(model.stem(torch.flip(x, dims=(3,)))))
        assert torch.allclose(model(x), (single + mirrored) / 2, atol=1e-5)
        model.train()
        try:
            assert torch.allclose(model.forward_features(x), model.stages(model.stem(x)))
        finally:
            model.eval()
