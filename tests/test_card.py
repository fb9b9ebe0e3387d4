"""The model card of a real quick training run (slow): every section, the embedded copy,
regeneration with the owner's text and after a per-group evaluation, self-contained HTML, and
bad input. Fast: the card of a model not saved yet, on a run folder made by hand, is the card
read back once the model file is written, and its weights hash is that file's."""

from __future__ import annotations

import json
import re
import shutil
import struct

import numpy as np
import pytest
import torch
from imagegen import write_csv
from runhelpers import (
    CLASSES,
    assert_user_error,
    copy_files,
    fast_flags,
    run_imgrec,
    sample_files,
)
from safetensors.torch import save as save_safetensors

from imgrec import ImageClassifier, ImgrecError
from imgrec.bundle.format import (
    load_bundle,
    read_metadata,
    save_bundle,
    tensor_data_sha256,
    weights_sha256,
)
from imgrec.config import TrainConfig
from imgrec.evaluate import EvaluationResult
from imgrec.evaluate.intervals import wilson_interval
from imgrec.monitor.card import (
    DEFAULT_NOTE,
    build_card,
    build_card_for,
    write_card,
    write_card_for,
)

SECTIONS = (
    "Model details",
    "Intended use",
    "Out-of-scope uses",
    "Data",
    "Metrics",
    "Calibration",
    "Limitations",
    "Ethical considerations",
    "How to reproduce",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`imgrec train` on a CSV of 10 ants and 10 bees from the sample, with a camera column,
    at the fastest settings; the run folder is shared by the whole module."""
    base = tmp_path_factory.mktemp("card")
    rows = []
    for label in CLASSES:
        for i, f in enumerate(copy_files(sample_files("train", label, 10), base / "photos")):
            rows.append((f"photos/{f.name}", label, "phone" if i % 2 else "dslr"))
    data = write_csv(base / "data.csv", rows, header=("path", "label", "camera"))
    folder = base / "run"
    result = run_imgrec("train", data, "--split", "60/20/20", "--out", folder, *fast_flags())
    assert result.returncode == 0, result.stderr
    assert "card:" in result.stdout
    return folder


def _sections(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)


@pytest.mark.slow
def test_train_writes_a_card_with_every_section(run):
    md = (run / "model_card.md").read_text()
    html = (run / "model_card.html").read_text()
    assert _sections(md) == list(SECTIONS)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    meta = read_metadata(run / "model.imgrec")
    assert meta["model_card"] == md  # the embedded copy is the file
    assert weights_sha256(run / "model.imgrec") in md
    metrics = json.loads((run / "metrics.json").read_text())
    n, acc = metrics["n"], metrics["accuracy"]
    low, high = wilson_interval(round(acc * n), n)
    assert f"{acc:.1%}" in md and f"{low:.1%} to {high:.1%}" in md  # the interval, in words
    assert "Expected calibration error (ECE) on the test split" in md
    assert DEFAULT_NOTE in md  # defaults say plainly who wrote them
    assert "Groups not evaluated" in md and "camera" in md  # the CSV column nobody evaluated
    assert "--split-file" in md and "--epochs 1" in md  # the exact command
    assert "Per group: not evaluated" in md


@pytest.mark.slow
def test_card_html_is_self_contained(run):
    html = (run / "model_card.html").read_text()
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "<link" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert all(s.startswith("data:") for s in sources)


@pytest.mark.slow
def test_embedding_keeps_the_weights_and_the_model_usable(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    before = weights_sha256(copy / "model.imgrec")
    files = write_card(copy, intended_use="Counting bees in the 2025 garden survey.")
    assert weights_sha256(copy / "model.imgrec") == before
    assert read_metadata(copy / "model.imgrec")["model_card"] == files.text
    clf = ImageClassifier.load(copy / "model.imgrec")
    assert clf.predict([sample_files("val", "bees", 1)[0]])[0].label in CLASSES


@pytest.mark.slow
def test_calibration_figures_from_metrics_json_are_used(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["calibration"] = {"ece": 0.1234, "bins": [], "temperature": 1.7}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    md = build_card(copy).markdown()
    assert "0.123 (from metrics.json)" in md
    assert "temperature of 1.7" in md


@pytest.mark.slow
def test_card_command_regenerates_with_owner_text_and_groups(run):
    # a per-group evaluation saved where `imgrec evaluate` puts it by default (inside the run
    # folder); in-process, since test_groups.py runs the same through the CLI
    clf = ImageClassifier.load(run / "model.imgrec")
    clf.evaluate(run.parent / "data.csv", group_by=["camera"]).save_metrics(
        run / "eval-data" / "metrics.json"
    )
    use = "Sorting garden-survey photos into ants and bees; a person checks every bee."
    result = run_imgrec("card", run, "--intended-use", use, "--out", run / "card-out")
    assert result.returncode == 0, result.stderr
    md = (run / "card-out" / "model_card.md").read_text()
    assert use in md
    intended = md.split("## Intended use")[1].split("## ")[0]
    assert DEFAULT_NOTE not in intended  # the owner's text replaces the default
    assert DEFAULT_NOTE in md.split("## Out-of-scope uses")[1]  # that one is still a default
    assert "By camera:" in md and "| dslr |" in md and "Groups evaluated: camera" in md
    assert "group_accuracy" not in md
    html = (run / "card-out" / "model_card.html").read_text()
    assert 'src="data:image/png;base64,' in html
    assert read_metadata(run / "model.imgrec")["model_card"] == md
    # the owner's text is kept for the next regeneration, without the option
    assert use in write_card(run).text


@pytest.mark.slow
def test_card_and_info_errors(run, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert_user_error(
        run_imgrec("card", tmp_path / "half"),
        "not a finished run folder",
        "model.imgrec, metrics.json",
    )
    broken = tmp_path / "broken"
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns("checkpoints", "eval-*", "card-*"))
    (broken / "metrics.json").write_text('{"accuracy": 0.9')
    with pytest.raises(ImgrecError, match=r"metrics.json is damaged"):
        write_card(broken)
    (broken / "metrics.json").write_text('{"accuracy": 0.9}')
    with pytest.raises(ImgrecError, match=r"metrics.json is damaged \(it lacks"):
        write_card(broken)
    good = json.loads((run / "metrics.json").read_text())
    (broken / "metrics.json").write_text(json.dumps({**good, "groups": {"columns": {}}}))
    with pytest.raises(ImgrecError, match="per-group results are incomplete"):
        write_card(broken)
    with pytest.raises(ImgrecError, match="is a file; give the run folder"):
        write_card(run / "model.imgrec")
    with pytest.raises(ImgrecError, match="--intended-use is empty"):
        write_card(run, intended_use="   ")


@pytest.mark.slow
def test_info_shows_the_embedded_card(run, tmp_path):
    result = run_imgrec("info", run / "model.imgrec", "--card")
    assert result.returncode == 0, result.stderr
    assert result.stdout == read_metadata(run / "model.imgrec")["model_card"]
    state, metadata = load_bundle(run / "model.imgrec")
    del metadata["model_card"]
    save_bundle(tmp_path / "old.imgrec", state, metadata)  # a model from before cards
    missing = run_imgrec("info", tmp_path / "old.imgrec", "--card")
    assert_user_error(missing, "holds no model card", "imgrec card RUN_FOLDER")


# ---- the card before the model file: fast, on a run folder made by hand ----------------------
STATE = {
    "conv.weight": torch.randn(4, 3, 3, 3),
    "fc.weight": torch.randn(5, 2).t(),  # not contiguous: save_bundle makes it so
    "fc.bias": torch.zeros(2, dtype=torch.float16),
    "steps": torch.tensor(7),
}


def _data_section(data: bytes) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    return data[8 + length :]


def test_safetensors_data_section_does_not_depend_on_the_metadata():
    tensors = {k: v.contiguous() for k, v in STATE.items()}
    short = save_safetensors(tensors, metadata={"imgrec": "{}"})
    long = save_safetensors(tensors, metadata={"imgrec": json.dumps({"model_card": "x" * 999})})
    assert short != long
    assert _data_section(short) == _data_section(long)


def test_tensor_data_sha256_is_the_hash_of_the_saved_file(tmp_path):
    tied = {**STATE, "head.weight": STATE["conv.weight"]}  # shared storage, as tied weights
    path = tmp_path / "model.imgrec"
    save_bundle(path, tied, {"model_card": "a card"})
    assert tensor_data_sha256(tied) == weights_sha256(path)
    other = {**tied, "steps": torch.tensor(8)}
    assert tensor_data_sha256(other) != tensor_data_sha256(tied)


@pytest.fixture
def unsaved_run(tmp_path):
    """A run folder as a job leaves it just before saving the model file, and that file's
    metadata: metrics.json, config.json, split.csv, audit.json, skipped.csv."""
    folder = tmp_path / "run"
    folder.mkdir()
    source = write_csv(
        tmp_path / "data.csv", [("a.jpg", "ants", "phone")], ("path", "label", "camera")
    )
    labels = ["ants", "bees"] * 4
    with open(folder / "split.csv", "w", encoding="utf-8") as f:
        f.write("path,label,split\n")
        for i, label in enumerate(labels * 3):
            f.write(f"{i}.jpg,{label},{('train', 'val', 'test')[i // len(labels)]}\n")
    (folder / "skipped.csv").write_text("path,reason\nbad.jpg,cannot decode\n")
    audit = {"counts": {"unreadable": 1, "exact_duplicate": 0}, "leakage": {}}
    (folder / "audit.json").write_text(json.dumps({**audit, "cross_split_duplicates": 0}))
    config = TrainConfig().to_dict()
    (folder / "config.json").write_text(json.dumps({**config, "source": str(source)}))
    probs = np.array([[0.8, 0.2], [0.3, 0.7]] * 3 + [[0.4, 0.6], [0.6, 0.4]])
    test = [f"{i}.jpg" for i in range(16, 24)]
    evaluation = EvaluationResult.from_predictions(probs, np.array([0, 1] * 4), CLASSES, test)
    evaluation.save_metrics(folder / "metrics.json")
    metadata = {
        "model": config["model"],
        "classes": list(CLASSES),
        "config": config,
        "preprocessing": {
            "input_size": 224,
            "resize_size": 256,
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
        },
        "metrics": {"split": "test", "best_epoch": {"phase": "head", "epoch": 2, "val_acc": 0.9}},
        "data": {"source": str(source), "fingerprint": "f" * 64},
        "created": "2025-06-01T12:00:00+00:00",
        "versions": {"imgrec": "0.1", "torch": torch.__version__},
    }
    return folder, metadata


def test_card_before_the_model_file_is_the_card_read_back_after(unsaved_run):
    folder, metadata = unsaved_run
    before = build_card_for(folder, metadata, tensor_data_sha256(STATE))
    assert not (folder / "model.imgrec").exists()
    save_bundle(folder / "model.imgrec", STATE, {**metadata, "model_card": before.markdown()})
    after = build_card(folder)  # what `imgrec card` reads: the file, its hash, the folder
    after.generated = before.generated
    assert before.markdown() == after.markdown()
    assert before.html() == after.html()
    assert weights_sha256(folder / "model.imgrec") in before.markdown()
    assert "listed in skipped.csv" in before.markdown() and "camera" in before.markdown()


def test_write_card_for_writes_the_files_and_the_text_to_embed(unsaved_run):
    folder, metadata = unsaved_run
    metadata["model_card_text"] = {"intended_use": "Counting bees in one garden."}
    files = write_card_for(folder, metadata, tensor_data_sha256(STATE))
    assert files.markdown.read_text(encoding="utf-8") == files.text
    assert "<h2>Intended use</h2>" in files.html.read_text(encoding="utf-8")
    assert files.model == folder / "model.imgrec" and not files.model.exists()
    assert "Counting bees in one garden." in files.text  # a retrained model keeps owner text


def test_card_before_the_model_file_needs_the_metrics(unsaved_run):
    folder, metadata = unsaved_run
    (folder / "metrics.json").unlink()
    with pytest.raises(ImgrecError, match="lacks metrics.json"):
        build_card_for(folder, metadata, "0" * 64)
