"""`imgrec compare`: one split for all, honest skips, a readable leaderboard, the best kept."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from runhelpers import assert_user_error, make_split_dataset, run_imgrec

from imgrec.api import ImageClassifier
from imgrec.config import parse_duration
from imgrec.errors import ImgrecError
from imgrec.models.families import KINDS, train_config
from imgrec.runs.compare import compare


def test_parse_duration():
    assert parse_duration("20m") == 1200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_duration("45s") == 45
    for bad in ("soon", "0", "5x", "-3m"):
        with pytest.raises(ImgrecError):
            parse_duration(bad)


def test_leaderboard_ranks_families_on_one_split_and_keeps_the_best(tmp_path):
    data = make_split_dataset(tmp_path / "data", n_train=8, n_val=5)
    names = ["tree-hog", "logreg-embed", "svm-hog"]
    board = compare(data, tmp_path / "cmp", names, budget=600, progress=False)
    ok = board.ranked()
    assert [e.family for e in ok] == sorted(
        [e.family for e in ok], key=lambda n: -next(e.accuracy for e in ok if e.family == n)
    )
    assert {e.family for e in board.entries} == set(names)
    assert all(e.status == "ok" for e in board.entries)
    assert all(e.ms_per_image > 0 and e.size_mb > 0 and e.train_seconds >= 0 for e in ok)
    # train/ and val/ only: val is scored, and choosing happens on a part of train instead
    assert board.evaluated_on == "test" and not board.selection_split
    # one split for every family
    split_rows = list(csv.DictReader((tmp_path / "cmp" / "split.csv").open()))
    assert len(split_rows) == 26
    folder = {r["path"]: Path(r["path"]).parts[-3] for r in split_rows}  # train or val
    given_val = {r["path"] for r in split_rows if folder[r["path"]] == "val"}
    assert given_val == {r["path"] for r in split_rows if r["split"] == "test"}
    assert {r["split"] for r in split_rows if folder[r["path"]] == "train"} == {"train", "val"}
    # the best model is the first row's and works like any model file
    best = ImageClassifier.load(board.best)
    assert best.metadata["model"] == ok[0].family
    rows = list(csv.DictReader((tmp_path / "cmp" / "leaderboard.csv").open()))
    assert rows[0]["family"] == ok[0].family and rows[0]["rank"] == "1"
    document = json.loads((tmp_path / "cmp" / "leaderboard.json").read_text())
    assert document["entries"][0]["family"] == ok[0].family
    html = (tmp_path / "cmp" / "leaderboard.html").read_text()
    assert "scored on the test split" in html and "data:image/png;base64," in html
    assert "There is no test split" not in html  # that note is for scores on a selection split
    for name in names:
        assert f">{name}</a>" in html
        assert (tmp_path / "cmp" / name / "report.html").exists()


def test_families_that_cannot_fit_are_skipped_and_said_so(tmp_path):
    data = make_split_dataset(tmp_path / "data", n_train=6, n_val=3)
    budget = KINDS["classic"].least_seconds(12) + 8  # room for one classic family, not more
    board = compare(
        data, tmp_path / "cmp", ["tree-hog", "efficientnet_lite0"], budget=budget, progress=False
    )
    by_name = {e.family: e for e in board.entries}
    assert by_name["tree-hog"].status == "ok"
    assert by_name["efficientnet_lite0"].status == "skipped"
    assert "left" in by_name["efficientnet_lite0"].note
    assert board.entries[0].family == "tree-hog"  # finished rows first


def test_cli_compare_errors_are_one_line(tmp_path):
    data = make_split_dataset(tmp_path / "data", n_train=4, n_val=2)
    assert_user_error(
        run_imgrec("compare", data, "--models", "tree-hog,no-such-model", "--out", tmp_path / "c"),
        "unknown model",
    )
    assert_user_error(run_imgrec("compare", data, "--budget", "soon"), "duration")
    assert_user_error(
        run_imgrec("compare", tmp_path / "missing", "--models", "tree-hog"), "missing"
    )


def test_a_time_limited_schedule_follows_the_clock():
    """Cut by its time limit, a run warms up, peaks and still ends on low learning rates,
    even when --epochs (an upper bound) is far more than the clock allows."""
    from imgrec.train.head import warmup_cosine

    spent = [0.0]
    factor = warmup_cosine(1000, 0.1, time_used=lambda: spent[0])
    assert factor(5) == warmup_cosine(1000, 0.1)(5)  # the clock is behind: warm-up by steps
    spent[0] = 0.05
    assert factor(5) == pytest.approx(0.5)  # the clock is ahead: half-way through warm-up
    spent[0] = 0.1
    assert factor(5) == pytest.approx(1.0)  # peak once a tenth of the time is gone
    spent[0] = 0.55
    assert factor(5) == pytest.approx(0.5)  # half-way down the cosine after warm-up
    assert factor(200) == pytest.approx(0.5)
    spent[0] = 1.0
    assert factor(200) == pytest.approx(0.0, abs=1e-9)
    spent[0] = 0.0
    assert factor(550) == pytest.approx(warmup_cosine(1000, 0.1)(550))  # steps ahead


def test_the_schedule_clock_spreads_over_the_time_left_and_survives_a_resume():
    """Phase 1 may have used part of the limit: phase 2's schedule counts from its first step,
    and a run resumed from last.ckpt keeps that origin instead of starting the clock again."""
    from imgrec.models.registry import create_model, get_spec
    from imgrec.train.module import FineTuneModule

    spent = [0.4]

    def module() -> FineTuneModule:
        network = create_model(get_spec("cnn-scratch"), 2, "none")
        config = train_config("cnn-scratch", time_limit=60.0)
        return FineTuneModule(network, config, 100, freeze_bn=False, time_used=lambda: spent[0])

    first = module()
    assert first.schedule_clock() == 0.0  # the first step: nothing of the time left is spent
    spent[0] = 0.7
    assert first.schedule_clock() == pytest.approx(0.5)
    checkpoint: dict = {}
    first.on_save_checkpoint(checkpoint)
    resumed = module()
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.schedule_clock() == pytest.approx(0.5)
