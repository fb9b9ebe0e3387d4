"""The model card of a real quick training run: every section, the embedded copy, regeneration
with the owner's text and after a per-group evaluation, self-contained HTML, and bad input."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from imagegen import write_csv
from runhelpers import (
    CLASSES,
    assert_user_error,
    copy_files,
    fast_flags,
    run_imgrec,
    sample_files,
)

from imgrec import ImageClassifier, ImgrecError
from imgrec.bundle.format import load_bundle, read_metadata, save_bundle
from imgrec.evaluate.intervals import wilson_interval
from imgrec.monitor.card import DEFAULT_NOTE, build_card, weights_sha256, write_card

pytestmark = pytest.mark.slow

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


def test_card_html_is_self_contained(run):
    html = (run / "model_card.html").read_text()
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "<link" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert all(s.startswith("data:") for s in sources)


def test_embedding_keeps_the_weights_and_the_model_usable(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    before = weights_sha256(copy / "model.imgrec")
    files = write_card(copy, intended_use="Counting bees in the 2025 garden survey.")
    assert weights_sha256(copy / "model.imgrec") == before
    assert read_metadata(copy / "model.imgrec")["model_card"] == files.text
    clf = ImageClassifier.load(copy / "model.imgrec")
    assert clf.predict([sample_files("val", "bees", 1)[0]])[0].label in CLASSES


def test_calibration_figures_from_metrics_json_are_used(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["calibration"] = {"ece": 0.1234, "bins": [], "temperature": 1.7}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    md = build_card(copy).markdown()
    assert "0.123 (from metrics.json)" in md
    assert "temperature of 1.7" in md


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


def test_info_shows_the_embedded_card(run, tmp_path):
    result = run_imgrec("info", run / "model.imgrec", "--card")
    assert result.returncode == 0, result.stderr
    assert result.stdout == read_metadata(run / "model.imgrec")["model_card"]
    state, metadata = load_bundle(run / "model.imgrec")
    del metadata["model_card"]
    save_bundle(tmp_path / "old.imgrec", state, metadata)  # a model from before cards
    missing = run_imgrec("info", tmp_path / "old.imgrec", "--card")
    assert_user_error(missing, "holds no model card", "imgrec card RUN_FOLDER")
