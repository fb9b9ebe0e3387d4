"""The data audit end to end: planted copies and flipped labels in real photos, the report,
the CLI's exit codes, leakage-proof splits, and the quick audit before training."""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from imagegen import BAD_KINDS, write_kind
from PIL import Image
from runhelpers import CLASSES, copy_files, make_class_dataset, run_imgrec, sample_files

from imgrec import load_dataset
from imgrec.audit.report import save_audit
from imgrec.audit.run import audit_dataset, group_keys
from imgrec.cli import SAMPLE

N_COPIES = 30
FLIP_FRACTION = 0.05


def modified_copy(source: Path, target: Path, kind: int) -> None:
    """A recompressed, resized or cropped copy: what leaks into test sets in the wild."""
    with Image.open(source) as im:
        im = im.convert("RGB")
        w, h = im.size
        if kind == 1:
            im = im.resize((round(w * 0.9), round(h * 0.9)))
        elif kind == 2:
            im = im.crop((round(w * 0.07), round(h * 0.07), w, h))
        im.save(target, quality=65 if kind == 0 else 85)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The bundled sample (train/val as given) with 30 modified copies of train photos planted
    in val, and 5% of the other train photos moved to the wrong class."""
    root = tmp_path_factory.mktemp("planted") / "data"
    shutil.copytree(SAMPLE, root)
    rng = random.Random(0)
    train = sorted((root / "train").glob("*/*.jpg"))
    rng.shuffle(train)
    origin: dict[Path, Path] = {}
    for n, source in enumerate(train[:N_COPIES]):
        target = root / "val" / source.parent.name / f"copy{n:02d}.jpg"
        modified_copy(source, target, n % 3)
        origin[target] = source
    flipped = {}
    for source in train[N_COPIES : N_COPIES + round(FLIP_FRACTION * 170)]:
        other = next(c for c in CLASSES if c != source.parent.name)
        target = root / "train" / other / source.name
        shutil.move(source, target)
        flipped[target] = source.parent.name
    dataset = load_dataset(root)
    result = audit_dataset(dataset)
    return SimpleNamespace(root=root, dataset=dataset, result=result, origin=origin, flip=flipped)


def test_planted_copies_are_found_without_false_pairs(planted):
    groups = [set(g.paths) for g in planted.result.duplicates]
    found = sum(any({copy, source} <= g for g in groups) for copy, source in planted.origin.items())
    assert found >= 0.95 * N_COPIES
    pairs = [pair for g in groups for pair in itertools.combinations(sorted(g), 2)]

    def same_photo(a: Path, b: Path) -> bool:
        return planted.origin.get(a, a) == planted.origin.get(b, b)

    false = [pair for pair in pairs if not same_photo(*pair)]
    assert len(false) < 0.02 * len(pairs), false


def test_copies_across_given_splits_are_reported_as_leakage(planted):
    result = planted.result
    assert len(result.leaking_groups) >= 0.95 * N_COPIES
    assert result.leaked_files >= 2 * len(result.leaking_groups)
    assert result.issues_found()
    summary = "\n".join(result.summary())
    assert "Leakage between splits" in summary and "groups" in summary


def test_flipped_labels_are_flagged_with_their_true_class(planted):
    suspects = {s.path: s for s in planted.result.label_suspects}
    caught = [p for p in planted.flip if p in suspects]
    assert len(caught) >= 0.5 * len(planted.flip)
    assert all(suspects[p].suggested == planted.flip[p] for p in caught)
    top = planted.result.label_suspects[: max(1, len(planted.dataset) // 10)]
    assert sum(s.path in planted.flip for s in top) >= 0.5 * len(top)


def test_report_files_are_complete_and_readable(planted, tmp_path):
    json_path, html_path = save_audit(planted.result, tmp_path / "audit")
    data = json.loads(json_path.read_text())
    assert data["images"] == len(planted.dataset)
    assert data["issues_found"] is True
    assert data["leakage"]["groups"] == len(planted.result.leaking_groups)
    checks = {f["check"] for f in data["findings"]}
    assert {"leakage", "near_duplicate", "label_error"} <= checks
    assert len(data["outlier_ranking"]) >= 10
    html = html_path.read_text()
    assert html.count("data:image/jpeg;base64,") >= 2 * len(planted.result.leaking_groups[:40])
    for title in ("Class balance", "Duplicates and leakage", "Likely label errors", "Outlier"):
        assert title in html
    assert "<script" not in html  # self-contained and inert


def test_group_keys_keep_copies_in_one_split(planted):
    unsplit = load_dataset(planted.root).with_splits({})  # forget the given folders
    parts = unsplit.split(0.7, 0.15, 0.15, seed=0, groups=group_keys(unsplit, planted.result))
    where = {s.path: s.split for part in parts for s in part.samples}
    for group in planted.result.duplicates:
        assert len({where[p] for p in group.paths}) == 1


def test_awkward_files_are_listed_not_fatal(tmp_path):
    data = make_class_dataset(tmp_path / "data", n=4)
    for kind in BAD_KINDS:
        write_kind(data / "ants", kind)
    result = audit_dataset(load_dataset(data), embeddings=False)
    reasons = {s.path.name: s.reason for s in result.unreadable}
    assert len(reasons) >= 3 and all(reasons.values())
    assert result.n_images >= 8 and not result.embeddings_checked
    assert any("not checked" in line for line in result.summary())


# ---- the command line ------------------------------------------------------------------
def test_cli_audit_exit_codes(tmp_path):
    clean = make_class_dataset(tmp_path / "clean", n=6, skip=10)
    result = run_imgrec("audit", clean, "--out", tmp_path / "a1", "--no-embeddings", "-q")
    assert result.returncode in (0, 3), result.stderr
    report = json.loads((tmp_path / "a1" / "audit.json").read_text())
    assert (result.returncode == 3) == bool(report["blocking"])  # warnings exit 0
    assert (tmp_path / "a1" / "audit.html").stat().st_size > 10_000

    dirty = make_class_dataset(tmp_path / "dirty", n=6, skip=10)
    shutil.copy(
        dirty / "ants" / sorted(p.name for p in (dirty / "ants").iterdir())[0],
        dirty / "bees" / "same-photo.jpg",
    )  # one picture, two labels
    result = run_imgrec("audit", dirty, "--out", tmp_path / "a2", "--no-embeddings", "-q")
    assert result.returncode == 3, result.stderr
    assert "Duplicates with different labels" in result.stderr
    assert "report:" in result.stdout and "Traceback" not in result.stderr

    missing = run_imgrec("audit", tmp_path / "nowhere", "--out", tmp_path / "a3")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_cli_split_keeps_duplicates_together(tmp_path):
    data = make_class_dataset(tmp_path / "data", n=12)
    copies = []
    for n, source in enumerate(sorted((data / "bees").glob("*.jpg"))[:4]):
        target = data / "bees" / f"copy{n}.jpg"
        modified_copy(source, target, 0)
        copies.append((source, target))
    out = tmp_path / "split.csv"
    result = run_imgrec(
        "split", data, "--ratios", "70/15/15", "--out", out, "--no-embeddings", "-q"
    )
    assert result.returncode == 0, result.stderr
    assert "cross-split duplicates: 0" in result.stdout
    with out.open() as f:
        where = {row["path"]: row["split"] for row in csv.DictReader(f)}
    assert set(where.values()) == {"train", "val", "test"}
    for source, copy in copies:  # split.csv's paths are relative to its own folder
        rel = lambda p: p.relative_to(tmp_path).as_posix()  # noqa: E731
        assert where[rel(source)] == where[rel(copy)]


def test_train_audits_first_and_can_skip_it(tmp_path):
    data = make_class_dataset(tmp_path / "data", n=8)
    copy_files(sample_files("train", "ants", 1), data / "bees")  # a label conflict
    run = tmp_path / "run"
    result = run_imgrec("train", data, "--out", run, "--epochs", "0", "-q")
    assert result.returncode == 0, result.stderr
    assert "Duplicates with different labels" in result.stderr
    audit = json.loads((run / "audit.json").read_text())
    assert audit["counts"]["label_conflict"] == 2
    assert audit["cross_split_duplicates"] == 0  # the fresh split kept the copies together

    quiet = run_imgrec(
        "train", data, "--out", tmp_path / "run2", "--epochs", "0", "-q", "--no-audit"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "Duplicates" not in quiet.stderr and not (tmp_path / "run2" / "audit.json").exists()
