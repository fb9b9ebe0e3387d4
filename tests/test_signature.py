"""The engines' second output (the drift signature), the stored temperature, input properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgrec.data.preprocess import Preprocessing
from imgrec.data.properties import input_properties
from imgrec.infer.engine import OnnxEngine, TorchEngine
from imgrec.models.registry import create_model, get_spec
from imgrec.models.signature import SIGNATURE_DIMS, projection

PRE = Preprocessing(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 72)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return create_model(get_spec("cnn-scratch"), 3, "none", 0.0).eval()


def test_projection_is_the_same_in_every_process():
    a, b = projection(100), projection(100)
    assert a.shape == (100, SIGNATURE_DIMS) and torch.equal(a, b)
    assert not torch.equal(projection(101)[:100], a)  # each width its own matrix


def test_torch_and_onnx_engines_agree_on_probabilities_and_signatures(network):
    images = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
    eager = TorchEngine(network, temperature=2.0)
    probs, signatures = eager.run(images)
    assert signatures.shape == (5, SIGNATURE_DIMS)
    np.testing.assert_allclose(probs, eager(images), atol=1e-6)
    onnx = OnnxEngine.from_network(network, 64, (1, 4), temperature=2.0)
    onnx_probs, onnx_signatures = onnx.run(images)  # 5 images run as 4 + 1
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-5)
    np.testing.assert_allclose(onnx_signatures, signatures, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(onnx(images), onnx_probs, atol=1e-7)


def test_temperature_softens_probabilities(network):
    images = np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32)
    sharp, soft = TorchEngine(network, 1.0)(images), TorchEngine(network, 4.0)(images)
    assert (soft.max(1) <= sharp.max(1) + 1e-6).all()
    assert (soft.argmax(1) == sharp.argmax(1)).all()  # the ranking never changes


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> the (N, 3, H, W) model input of PRE."""
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.5


def test_input_properties_follow_brightness_contrast_and_blur():
    rng = np.random.default_rng(0)
    texture = rng.integers(60, 200, (1, 64, 64, 3), dtype=np.uint8)
    dark = (texture * 0.4).astype(np.uint8)
    flat = np.full_like(texture, 128)
    blurred = torch.nn.functional.avg_pool2d(
        torch.from_numpy(texture).permute(0, 3, 1, 2).float(), 5, 1, 2
    )
    blurred = blurred.permute(0, 2, 3, 1).round().byte().numpy()
    props = input_properties(_normalised(np.concatenate([texture, dark, flat, blurred])), PRE)
    assert props.shape == (4, 3) and props.dtype == np.float32
    brightness, contrast, sharpness = props.T
    assert brightness[1] < 0.5 * brightness[0]
    assert contrast[2] == pytest.approx(0.0, abs=1e-6) and sharpness[2] == pytest.approx(
        0, abs=1e-6
    )
    assert sharpness[3] < 0.5 * sharpness[0]
    assert brightness[0] == pytest.approx(
        np.dot(texture.mean((0, 1, 2)) / 255, [0.299, 0.587, 0.114]), abs=0.01
    )


def test_onnx_runs_two_images_a_thread_at_a_time_with_the_same_answers(network, monkeypatch):
    import imgrec.infer.engine as engine

    images = np.random.default_rng(1).standard_normal((7, 3, 64, 64)).astype(np.float32)
    small = OnnxEngine.from_network(network, 64, (32,), threads=1)
    assert small.batch_sizes == [2]  # 7 images run as 2 + 2 + 2 + (1 padded to 2)
    assert OnnxEngine.from_network(network, 64, (1, 2, 4, 8), threads=2).batch_sizes == [1, 2, 4]
    monkeypatch.setattr(engine, "IMAGES_PER_THREAD", 32)
    whole = OnnxEngine.from_network(network, 64, (32,), threads=1)
    assert whole.batch_sizes == [32]
    np.testing.assert_allclose(small(images), whole(images), atol=1e-6)
