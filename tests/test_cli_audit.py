"""`imgrec audit`'s exit code: 3 only for findings that make results wrong (unreadable files,
leakage between splits, identical files with different labels); warnings exit 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from imagegen import write_kind
from runhelpers import make_class_dataset, run_imgrec

from imgrec.audit.result import CHECKS, AuditResult, DuplicateGroup, Outlier
from imgrec.cli import SAMPLE
from imgrec.data.dataset import Skipped


def _result(**found) -> AuditResult:
    return AuditResult(
        root=Path("data"),
        classes=["ants", "bees"],
        class_counts={"ants": 10, "bees": 10},
        split_counts={},
        facts=[],
        unreadable=found.get("unreadable", []),
        duplicates=found.get("duplicates", []),
        outliers=found.get("outliers", []),
        embeddings_checked=True,
    )


def _group(kind: str, labels: list[str], splits: list[str | None]) -> DuplicateGroup:
    paths = [Path(f"{label}/{i}.jpg") for i, label in enumerate(labels)]
    return DuplicateGroup(kind, paths, labels, splits, similarity=0.99)


def test_only_errors_block():
    assert {check for check, (_, severity, _) in CHECKS.items() if severity == "error"} == {
        "unreadable",
        "label_conflict",
        "leakage",
    }
    unreadable = _result(unreadable=[Skipped(Path("ants/x.jpg"), "zero bytes")])
    assert unreadable.blocking_issues() == {"unreadable": 1}
    exact_conflict = _result(duplicates=[_group("exact", ["ants", "bees"], [None, None])])
    assert exact_conflict.blocking_issues() == {"label_conflict": 2}
    leak = _result(duplicates=[_group("near", ["ants", "ants"], ["train", "test"])])
    assert leak.blocking_issues() == {"leakage": 2}

    # warnings: near copies within a split (even with different labels), outliers
    near = _result(duplicates=[_group("near", ["ants", "bees"], ["train", "train"])])
    assert near.blocking_issues() == {} and near.issues_found()
    assert near.counts() == {"near_duplicate": 2, "near_label_conflict": 2}
    odd = _result(outliers=[Outlier(Path("ants/0.jpg"), "ants", -3.0, flagged=True)])
    assert odd.blocking_issues() == {} and odd.issues_found()
    assert "worth a look" in odd.summary()[-1]
    assert unreadable.summary()[-1].startswith("error: results would be wrong")


def test_the_shipped_sample_audits_clean(tmp_path):
    """The four real photos the embeddings call outliers are warnings: exit 0."""
    result = run_imgrec("audit", SAMPLE, "--out", tmp_path / "audit", "-q")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["blocking"] == {}
    assert "worth a look" in result.stderr or "No issues found" in result.stderr
    assert "Remove what does not belong" not in result.stderr


def test_an_unreadable_file_exits_3(tmp_path):
    data = make_class_dataset(tmp_path / "data", n=4)
    bad = write_kind(data / "ants", "zero_bytes")
    result = run_imgrec("audit", data, "--out", tmp_path / "audit", "--no-embeddings", "-q")
    assert result.returncode == 3, result.stderr
    assert "Unreadable files" in result.stderr and "results would be wrong" in result.stderr
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["blocking"] == {"unreadable": 1}
    assert report["findings"][0]["path"] == str(bad)


def test_a_copy_across_splits_exits_3(tmp_path):
    data = tmp_path / "data"
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            files = sorted((SAMPLE / "train" / label).glob("*.jpg"))[:3]
            (data / split / label).mkdir(parents=True)
            for f in files if split == "train" else files[1:]:  # val shares two photos
                shutil.copy(f, data / split / label / f.name)
    result = run_imgrec("audit", data, "--out", tmp_path / "audit", "--no-embeddings", "-q")
    assert result.returncode == 3, result.stderr
    assert "Leakage between splits" in result.stderr
