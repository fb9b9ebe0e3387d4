"""`imgrec retrain` on photos of the bundled ants-vs-bees sample: one quick run is trained per
module, then continued on new photos (library and CLI), refused, interrupted and misused.

Models train at 96 px for one epoch: the checks are about what retraining keeps, compares and
replaces, not about accuracy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from runhelpers import (
    CLASSES,
    assert_user_error,
    copy_files,
    make_class_dataset,
    read_csv,
    run_imgrec,
    sample_files,
    signal_when,
    squash,
    start_imgrec,
)

from imgrec import ImageClassifier, load_dataset
from imgrec.data.dataset import Dataset
from imgrec.errors import ImgrecError
from imgrec.models.families import train_config
from imgrec.runs.retrain import retrain_run
from imgrec.runs.train import train_run

pytestmark = pytest.mark.slow

RUN_FILES = ("config.json", "split.csv", "metrics.json", "report.html", "model.imgrec")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An old run (10 photos per class) and new photos: 5 per class plus a copy of an old one."""
    base = tmp_path_factory.mktemp("retrain")
    old_data = make_class_dataset(base / "old", n=10)
    new_data = base / "new"
    for label in CLASSES:
        copy_files(sample_files("val", label, 5), new_data / label)
    copied = sorted((old_data / "ants").glob("*.jpg"))[0]
    shutil.copy2(copied, new_data / "ants" / "copy-of-an-old-photo.jpg")
    config = train_config("efficientnet_lite0", epochs=1, image_size=96)
    run = train_run(old_data, base / "runs" / "old", config, progress=False)
    return SimpleNamespace(base=base, old_data=old_data, new_data=new_data, run=run.folder)


@pytest.fixture(scope="module")
def accepted(trained):
    """A retrain through the library API, on a copy of the old run (the original stays).

    A negative min_gain accepts a model up to 50 points worse: what is checked here is how a
    model is replaced, not whether one epoch on 96 px photos helps."""
    run = trained.base / "runs" / "accept"
    shutil.copytree(trained.run, run)
    before = (run / "model.imgrec").read_bytes()
    result = retrain_run(
        run, trained.new_data, trained.base / "runs" / "accept-new", min_gain=-0.5, progress=False
    )
    return SimpleNamespace(run=run, before=before, result=result)


def _split_of(folder: Path) -> dict[str, str]:
    return {Path(r["path"]).name: r["split"] for r in read_csv(folder / "split.csv")}


def test_retrained_run_is_a_complete_run_folder(trained, accepted):
    new = accepted.result.folder
    for name in (*RUN_FILES, "retrain.json", "history.csv", "data.csv"):
        assert (new / name).is_file(), name
    comparison = json.loads((new / "retrain.json").read_text())
    for part in ("old_test", "new_test", "combined"):
        assert comparison["evaluation"][part]["old"]["n"] > 0, part
        assert 0 <= comparison["evaluation"][part]["new"]["accuracy"] <= 1
    # the old split is kept as it was; the new photos are added to every split
    old_split, new_split = _split_of(trained.run), _split_of(new)
    assert {k: new_split[k] for k in old_split} == old_split
    added = [split for name, split in new_split.items() if name not in old_split]
    assert sorted(set(added)) == ["test", "train", "val"]
    # a copy of an old photo follows the original into its split
    original = sorted((trained.old_data / "ants").glob("*.jpg"))[0].name
    assert new_split["copy-of-an-old-photo.jpg"] == old_split[original]
    assert comparison["images"]["new_copies_of_old_images"] == 1
    # every other command reads the new folder as a normal run
    assert load_dataset(new / "data.csv").has_splits()
    clf = ImageClassifier.load(new / "model.imgrec")
    assert clf.classes == list(CLASSES)
    assert (
        json.loads((new / "metrics.json").read_text())["n"]
        == comparison["evaluation"]["combined"]["new"]["n"]
    )
    assert "retrained from" in (new / "report.html").read_text()


def test_training_starts_from_the_old_weights(accepted):
    new = accepted.result.folder
    rows = read_csv(new / "history.csv")
    assert (rows[0]["phase"], rows[0]["epoch"]) == ("start", "0")
    assert "head" not in {r["phase"] for r in rows}, "no head-only phase when retraining"
    assert any(r["phase"] == "finetune" for r in rows)
    # epoch 0 is the old model, measured on the new validation split
    old = ImageClassifier.load(new / "previous.imgrec")
    val = load_dataset(new / "data.csv").subset("val")
    assert float(rows[0]["val_acc"]) == pytest.approx(old.evaluate(val).accuracy, abs=1e-6)
    # a lower learning rate from the old head, not a new head: the weights stay close
    retrained = ImageClassifier.load(new / "model.imgrec")
    a = old.network.get_classifier().weight.detach().flatten()
    b = retrained.network.get_classifier().weight.detach().flatten()
    assert float(a @ b / (a.norm() * b.norm())) > 0.9
    if accepted.result.comparison["best_epoch"]["phase"] == "finetune":
        assert not bool((a == b).all()), "a fine-tuned epoch was kept but the head did not move"
    assert retrained.config.lr == pytest.approx(old.config.lr / 3)


def test_accepted_model_replaces_the_old_one_atomically(accepted):
    result, run = accepted.result, accepted.run
    assert result.accepted and result.replaced
    assert (run / "model.imgrec").read_bytes() == (result.folder / "model.imgrec").read_bytes()
    assert (result.folder / "previous.imgrec").read_bytes() == accepted.before
    assert not list(run.glob(".*.tmp")), "the temporary copy was left behind"
    # the next retrain of this run continues from the grown split, not the original one
    meta = ImageClassifier.load(run / "model.imgrec").metadata["retrained"]
    assert Path(meta["run"]) == result.folder.resolve()


def test_refusal_exits_4_and_keeps_the_old_model(trained, tmp_path):
    old_file = trained.run / "model.imgrec"
    before = old_file.read_bytes()
    out = tmp_path / "refused"
    result = run_imgrec(
        "retrain", trained.run, "--new", trained.new_data, "--out", out,
        "--min-gain", "0.5", "--epochs", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "kept the old model" in lines[0] and lines[0].count("%") == 2, lines[0]
    assert old_file.read_bytes() == before
    comparison = json.loads((out / "retrain.json").read_text())
    assert comparison["accepted"] is False and comparison["replaced"] is False
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert not (out / "previous.imgrec").exists()


def test_unknown_labels_are_refused_in_one_line(trained, tmp_path):
    wasps = tmp_path / "wasps"
    copy_files(sample_files("val", "ants", 2, skip=10), wasps / "ants")
    copy_files(sample_files("val", "bees", 2, skip=10), wasps / "wasps")
    before = (trained.run / "model.imgrec").read_bytes()
    result = run_imgrec("retrain", trained.run, "--new", wasps, "--out", tmp_path / "out")
    assert_user_error(result, "wasps", "cannot add classes", "imgrec train")
    assert not (tmp_path / "out").exists()
    assert (trained.run / "model.imgrec").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--min-gain", "2"], ["--min-gain 2.0", "between -1 and 1"]),
        (["--epochs", "0"], ["--epochs 0", "at least 1"]),
    ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, args, fragments):
    result = run_imgrec("retrain", tmp_path, "--new", tmp_path, *args)
    assert_user_error(result, *fragments)


def test_a_folder_that_is_not_a_run_is_refused(trained, tmp_path):
    result = run_imgrec("retrain", trained.old_data, "--new", trained.new_data)
    assert_user_error(result, "not a finished training run folder", "model.imgrec")


def test_ctrl_c_leaves_the_old_model_untouched(trained, tmp_path):
    before = (trained.run / "model.imgrec").read_bytes()
    out, log = tmp_path / "interrupted", tmp_path / "stderr.txt"
    args = ["retrain", trained.run, "--new", trained.new_data, "--out", out, "--epochs", "3"]
    process = start_imgrec(*args, "-q", log=log)
    history = out / "checkpoints" / "history.csv"
    code = signal_when(process, history.exists, "the retrain to start training", log)
    stderr = log.read_text(errors="replace")
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert squash("untouched") in squash(stderr)
    assert (trained.run / "model.imgrec").read_bytes() == before
    assert not (out / "model.imgrec").exists()


def test_help_has_an_example():
    result = run_imgrec("retrain", "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout and "--min-gain" in result.stdout


def test_new_images_of_one_class_can_join_an_existing_split(tmp_path):
    data = load_dataset(make_class_dataset(tmp_path / "data", n=4))
    bees = Dataset(data.root, [s for s in data.samples if s.label == "bees"], data.classes)
    with pytest.raises(ImgrecError, match="only one class"):
        bees.split(0.5, 0.25, 0.25)
    train, val, test = bees.split(0.5, 0.25, 0.25, standalone=False)
    assert (len(train), len(val), len(test)) == (2, 1, 1)
