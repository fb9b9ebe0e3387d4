"""`imgrec export`: ONNX (fp32, int8) and TorchScript files from a real tiny trained model,
checked against PyTorch on real photos from the bundled sample.

One head-only model is trained once per module (seconds); the parity checks run on a handful of
sample photos so the whole file stays well under a minute on two cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from runhelpers import make_class_dataset, sample_files

from imgrec import ImageClassifier, load_dataset
from imgrec.cli import main
from imgrec.data.cache import decode_batch_for_inference
from imgrec.export import export_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    train = load_dataset(make_class_dataset(base / "train", n=4))
    val = load_dataset(make_class_dataset(base / "val", n=2, skip=4))
    clf = ImageClassifier(epochs=0).fit(train, val, progress=False)
    model = clf.save(base / "model.imgrec")
    calibration = make_class_dataset(base / "calibration", n=4, skip=6)
    return SimpleNamespace(base=base, clf=clf, model=model, calibration=calibration)


def _images(clf: ImageClassifier, n: int) -> tuple[list[Path], np.ndarray]:
    paths = sample_files("val", "ants", n)
    x, ok, _ = decode_batch_for_inference(paths, clf.preprocessing)
    assert len(ok) == n
    return paths, x.numpy()


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_matches_pytorch_and_carries_its_preprocessing(trained):
    out = trained.base / "onnx" / "model.onnx"
    result = export_model(trained.model, "onnx", out, calibration=trained.calibration)
    assert result.path == out and out.exists()
    assert result.parity["parity"]["max_abs_diff"] <= 1e-4
    assert result.parity["parity"]["top1_agreement"] == 1.0
    assert json.loads(result.parity_path.read_text())["parity"]["images"] == 8
    assert result.parity_path == out.with_name("model.onnx.parity.json")

    session = _session(out)
    meta = session.get_modelmeta().custom_metadata_map
    clf = trained.clf
    assert json.loads(meta["classes"]) == clf.classes
    assert json.loads(meta["preprocessing"]) == clf.preprocessing.to_dict()
    assert json.loads(meta["data_fingerprint"]) == clf.metadata["data"]["fingerprint"]
    assert json.loads(meta["imgrec_version"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]

    for n in (1, 5):  # the batch axis is dynamic
        paths, x = _images(clf, n)
        got = session.run(None, {"images": x})[0]
        _, expected, _ = clf.predict_proba(paths)
        assert got.shape == (n, len(clf.classes))
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_int8_onnx_agrees_with_pytorch(trained):
    out = trained.base / "int8" / "model.int8.onnx"
    result = export_model(
        trained.model, "onnx", out, int8=True, calibration=trained.calibration, measure_speed=False
    )
    assert result.parity["parity"]["top1_agreement"] >= 0.9
    assert result.parity["fp32_parity"]["max_abs_diff"] <= 1e-4
    session = _session(out)
    assert json.loads(session.get_modelmeta().custom_metadata_map["quantization"]) != "none"
    ops = {node.op_type for node in __import__("onnx").load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    paths, x = _images(trained.clf, 5)
    _, expected, _ = trained.clf.predict_proba(paths)
    got = session.run(None, {"images": x})[0]
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.8


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_loads_with_torch_jit_and_matches(trained):
    result = export_model(trained.model, "torchscript", calibration=trained.calibration)
    assert result.path == trained.model.with_suffix(".pt")
    extra = {"metadata.json": ""}
    module = torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["classes"] == trained.clf.classes
    paths, x = _images(trained.clf, 5)
    _, expected, _ = trained.clf.predict_proba(paths)
    with torch.inference_mode():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["imgrec", *(str(a) for a in args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_exports_and_reports_parity(trained, monkeypatch, capsys):
    out = trained.base / "cli" / "m.onnx"
    code, stdout, _ = _cli(
        monkeypatch, capsys, "export", trained.model, "--out", out,
        "--calibration", trained.calibration,
    )  # fmt: skip
    assert code in (0, None), stdout
    assert "top-1 agreement 100.0%" in stdout and out.exists()


@pytest.mark.parametrize(
    "case, words",
    [
        ("not_a_model", "not an imgrec model file"),
        ("unknown_format", "unknown export format"),
        ("unwritable", "cannot create the folder"),
        ("torchscript_int8", "--int8"),
    ],
)
def test_cli_bad_inputs_end_in_one_line(trained, monkeypatch, capsys, tmp_path, case, words):
    text = tmp_path / "notes.txt"
    text.write_text("not a model, just some notes for the test")
    args = {
        "not_a_model": [text],
        "unknown_format": [trained.model, "--format", "tflite"],
        "unwritable": [trained.model, "--out", text / "sub" / "m.onnx"],
        "torchscript_int8": [trained.model, "--format", "torchscript", "--int8"],
    }[case]
    code, _, err = _cli(monkeypatch, capsys, "export", *args)
    assert code == 1
    assert words in _one_error_line(err)


def test_cli_help_shows_an_example(monkeypatch, capsys):
    code, stdout, _ = _cli(monkeypatch, capsys, "export", "--help")
    assert code == 0
    assert "Example: imgrec export" in " ".join(stdout.split())
