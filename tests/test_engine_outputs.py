"""Engines refuse to hand out probabilities that are not numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from servehelpers import small_model

from imgrec.bundle.model import load_model
from imgrec.errors import ImgrecError
from imgrec.infer.engine import make_engine


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """A real model whose weights turned NaN (as a damaged or crafted file would give)."""
    model = load_model(small_model(tmp_path_factory.getbasetemp()))
    with torch.no_grad():
        for parameter in model.network.parameters():
            parameter.fill_(float("nan"))
    return model


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_nan_probabilities_are_an_error_not_a_result(poisoned, engine):
    size = poisoned.preprocessing.input_size
    made = make_engine(poisoned.network, size, engine, [2])
    images = np.zeros((2, 3, size, size), np.float32)
    with pytest.raises(ImgrecError, match="not numbers"):
        made(images)
    with pytest.raises(ImgrecError, match="not numbers"):
        made.run(images)
