"""Crafted model-file metadata: one sentence naming the file and the field, never a traceback.

The attack (issue 15): deeply nested JSON in the header (RecursionError in `info` and
`predict`), classes that are not strings, preprocessing of the wrong type, an input size of
60000 (a 43 GB allocation), a temperature of 1e-45 or NaN weights (NaN probabilities, exit 0).
"""

from __future__ import annotations

import json
import struct

import pytest
import torch
from runhelpers import assert_user_error, run_imgrec, sample_files

from imgrec.bundle import FORMAT, BundleError, load_bundle, read_metadata, save_bundle
from imgrec.bundle.model import TrainedModel, load_model, save_model
from imgrec.config import TrainConfig
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.models.registry import create_model, get_spec


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A real (untrained) cnn-scratch model file: small, and every key save_model writes."""
    spec = get_spec("cnn-scratch")
    torch.manual_seed(0)
    network = create_model(spec, 2, weights="none")
    config = TrainConfig(model=spec.name, weights="none", head=False, epochs=1)
    prep = Preprocessing(spec.input_size, spec.mean, spec.std, spec.resize_size)
    path = tmp_path_factory.mktemp("model") / "model.imgrec"
    save_model(path, TrainedModel(network.eval(), spec, config, prep, ["ants", "bees"]))
    return path


DEEP = "[" * 50_000 + "]" * 50_000  # json.dumps cannot even write this; a hand can


def _with(model, tmp_path, change, name="crafted.imgrec"):
    """A copy of `model` with `change` applied to its metadata and tensors."""
    from safetensors.torch import save_file

    state, metadata = load_bundle(model)
    change(metadata, state)
    text = json.dumps(metadata).replace('"@DEEP@"', DEEP)
    path = tmp_path / name
    header = {"format": FORMAT, "format_version": "1", "imgrec": text}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=header)
    return path


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(metadata, state):
        target = metadata
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


# (change, words of the sentence); each refused by read_metadata and load_bundle alike
CRAFTED = {
    "deep nesting": (_set("history", "@DEEP@"), "nested over 32 levels"),
    "classes not strings": (_set("classes", [1, 2]), "'classes.0' should be a string"),
    "classes empty": (_set("classes", []), "'classes' is empty"),
    "classes repeated": (_set("classes", ["ants", "ants"]), "names a class twice"),
    "classes an object": (_set("classes", {"a": 1}), "'classes' should be a list"),
    "class name with escape codes": (_set("classes", ["\x1b[31mants", "b"]), "control char"),
    "preprocessing a list": (_set("preprocessing", [1]), "'preprocessing' should be an object"),
    "preprocessing missing a key": (
        lambda m, s: m["preprocessing"].pop("mean"),
        "'preprocessing.mean' is missing",
    ),
    "input size 60000": (
        _set("preprocessing", "input_size", 60000),
        "'preprocessing.input_size' is 60000, above the most allowed 1024",
    ),
    "input size a string": (_set("preprocessing", "input_size", "224"), "an integer"),
    "resize below input": (_set("preprocessing", "resize_size", 20), "smaller than the input"),
    "std zero": (_set("preprocessing", "std", [0.5, 0.0, 0.5]), "'preprocessing.std.1' is 0.0"),
    "mean NaN": (_set("preprocessing", "mean", [float("nan")] * 3), "a finite number"),
    "metrics a list": (_set("metrics", [1, 2]), "'metrics' should be an object"),
    "best epoch accuracy a string": (
        _set("metrics", {"best_epoch": {"val_acc": "high"}}),
        "'metrics.best_epoch.val_acc' should be a number",
    ),
    "temperature tiny": (
        _set("calibration", {"temperature": 1e-45}),
        "'calibration.temperature' is 1e-45, below the least allowed 0.05",
    ),
    "temperature NaN": (_set("calibration", {"temperature": float("nan")}), "finite number"),
    "versions not text": (_set("versions", {"torch": [1]}), "'versions.torch' should be a"),
    "config of the wrong type": (_set("config", "fast"), "'config' should be an object"),
    "config setting of the wrong type": (_set("config", "lr", "fast"), "setting 'lr'"),
    "config setting out of range": (_set("config", "dropout", 3.0), "invalid value 3.0"),
    "lone surrogate": (_set("created", "\ud800"), "'created' holds control characters"),
    "newline in a key": (_set("data", {"a\nb": "\x1b"}), "'data.a\\nb' holds control"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_metadata_is_one_sentence(model, tmp_path, case):
    change, words = CRAFTED[case]
    path = _with(model, tmp_path, change)
    for reader in (read_metadata, load_bundle, load_model):
        with pytest.raises(BundleError) as info:
            reader(path)
        message = str(info.value)
        assert words in message, message
        assert message.startswith(str(path)) and "\n" not in message
        assert "pydantic" not in message and "validation error" not in message.lower()


def _raw_header(tmp_path, header: bytes, data: bytes = b"") -> object:
    path = tmp_path / "raw.imgrec"
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _metadata_header(text: str) -> bytes:
    meta = {"format": FORMAT, "format_version": "1", "imgrec": text}
    return json.dumps({"__metadata__": meta}).encode()


@pytest.mark.parametrize(
    "header, words",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested over 32 levels"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested over 32 levels"),
        (b"[" + b"[]," * 300_000 + b"[]]", "too many values"),
        (b'{"w": {"data_offsets": [0, Infinity]}}', "damaged header"),
        (b'{"w": {"data_offsets": [0, ' + b"9" * 5000 + b"]}}", "no safetensors header"),
        (_metadata_header("[" * 10_000 + "]" * 10_000), "nested over 32 levels"),
        (_metadata_header('{"classes": ' + "9" * 5000 + "}"), "damaged metadata"),
        (
            json.dumps(
                {"__metadata__": {"format": FORMAT, "imgrec": "{}", "format_version": 1e999}}
            ).encode(),
            "damaged metadata",
        ),
    ],
    ids=[
        "deep",
        "deep-in-object",
        "many-containers",
        "inf-offset",
        "huge-int",
        "deep-metadata",
        "huge-int-metadata",
        "inf-version",
    ],
)
def test_crafted_headers_are_one_sentence(tmp_path, header, words):
    path = _raw_header(tmp_path, header)
    for reader in (read_metadata, load_bundle):
        with pytest.raises(BundleError, match=words):
            reader(path)


def test_header_over_the_cap_is_refused_before_parsing(tmp_path):
    meta = {"classes": ["a", "b"], "model_card": "x" * (17 << 20)}
    path = tmp_path / "big.imgrec"
    save_bundle(path, {"w": torch.zeros(1)}, meta)
    with pytest.raises(BundleError, match="over 16 MB"):
        read_metadata(path)


def test_nan_weights_are_refused(model, tmp_path):
    def poison(metadata, state):
        name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
        state[name] = state[name].clone()
        state[name].view(-1)[0] = float("nan")

    path = _with(model, tmp_path, poison)
    with pytest.raises(ImgrecError, match="holds NaN or infinite values in its weights"):
        load_model(path)


def test_missing_required_key_names_it(model, tmp_path):
    path = _with(model, tmp_path, lambda m, s: m.pop("classes"))
    with pytest.raises(ImgrecError, match="lacks the model metadata 'classes'"):
        load_model(path)


def test_unknown_model_kind_names_the_file(model, tmp_path):
    path = _with(model, tmp_path, _set("model", "no-such-network"))
    with pytest.raises(ImgrecError, match="kind 'no-such-network', which this imgrec cannot"):
        load_model(path)


def test_the_real_file_passes(model):
    assert read_metadata(model)["classes"] == ["ants", "bees"]
    assert load_model(model).temperature == 1.0


@pytest.mark.parametrize(
    "case", ["deep nesting", "classes not strings", "input size 60000", "temperature tiny"]
)
def test_info_and_predict_on_crafted_metadata_exit_with_one_sentence(model, tmp_path, case):
    """The attack as it was run, through the CLI: `info` reads the header only."""
    change, words = CRAFTED[case]
    path = _with(model, tmp_path, change)
    assert_user_error(run_imgrec("info", path), str(path), words)
    if case in ("deep nesting", "temperature tiny"):
        image = sample_files("val", "ants", 1)[0]
        assert_user_error(run_imgrec("predict", path, image), str(path), words)
