"""model.imgrec: round trip, and one clear error for each kind of bad file."""

import json

import pytest
import torch
from safetensors.torch import save_file

from imgrec.bundle import FORMAT, BundleError, load_bundle, read_metadata, save_bundle
from imgrec.bundle import format as bundle_format
from imgrec.errors import ImgrecError

METADATA = {
    "classes": ["ants", "bees"],
    "model": "x",
    "preprocessing": {"input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "resize_size": 256},
    "extra": {"kept": [1, 2.5, None, "text"]},  # keys a newer imgrec may add are kept
}


def _state():
    torch.manual_seed(0)
    conv = torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(2, 4)
    return {"conv.weight": conv, "fc.weight": weight, "fc.tied": weight, "bn.n": torch.tensor(7)}


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "model.imgrec"
    save_bundle(path, _state(), METADATA)
    return path


def test_round_trip(bundle):
    tensors, metadata = load_bundle(bundle)
    assert metadata == METADATA
    expected = _state()
    assert tensors.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(tensors[key], tensor) and tensors[key].dtype == tensor.dtype
    assert [p.name for p in bundle.parent.iterdir()] == ["model.imgrec"]  # no temp file left


def test_save_replaces_atomically_and_cleans_up_on_failure(bundle, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_format.os, "replace", broken)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(bundle, {"w": torch.zeros(1)}, {"new": True})
    assert read_metadata(bundle) == METADATA
    assert [p.name for p in bundle.parent.iterdir()] == ["model.imgrec"]


def test_read_metadata_reads_no_tensors(bundle, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tensors were loaded")

    monkeypatch.setattr("safetensors.torch.load", refuse)  # load_bundle imports it when called
    assert read_metadata(bundle) == METADATA


def test_bundle_error_is_user_facing():
    assert issubclass(BundleError, ImgrecError)


def _expect(path, pattern):
    for reader in (load_bundle, read_metadata):
        with pytest.raises(BundleError, match=pattern):
            reader(path)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.imgrec", "no model file at")


def test_directory(tmp_path):
    _expect(tmp_path, "is a folder")


@pytest.mark.parametrize(
    "content", [b"", b"abc", bytes(range(256)) * 40, b"\x05" + b"\0" * 7 + b"{oops"]
)
def test_garbage(tmp_path, content):
    path = tmp_path / "model.imgrec"
    path.write_bytes(content)
    _expect(path, "is not an imgrec model file")


@pytest.mark.parametrize("keep", [40, -10])
def test_truncated(bundle, keep):
    bundle.write_bytes(bundle.read_bytes()[:keep])
    _expect(bundle, "is not an imgrec model file")


def test_foreign_safetensors(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    _expect(path, "safetensors file but not an imgrec model")
    save_file({"w": torch.zeros(2)}, str(path))
    _expect(path, "safetensors file but not an imgrec model")


def test_newer_version(tmp_path):
    path = tmp_path / "model.imgrec"
    header = {"format": FORMAT, "format_version": "99", "imgrec": json.dumps(METADATA)}
    save_file({"w": torch.zeros(2)}, str(path), metadata=header)
    _expect(path, r"newer imgrec \(format 99\); upgrade imgrec")


def test_saved_file_follows_the_umask(tmp_path):
    import os
    import stat

    path = tmp_path / "m.imgrec"
    save_bundle(path, {"w": torch.zeros(2)}, {"classes": ["a", "b"]})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_reading_the_header_loads_no_torch(bundle):
    """`imgrec info` reads only the header: torch (2 s to import) must stay unloaded."""
    import subprocess
    import sys

    code = (
        "import sys; from imgrec.bundle.format import read_metadata; "
        f"read_metadata({str(bundle)!r}); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
