"""`--on ray`: prediction, embeddings and audits as Ray Data jobs on a local Ray cluster that
each `imgrec` process starts (real processes: a raylet, workers, an actor pool), checked
against the same commands in one process; plus the output parts, resume, object storage and
the errors a user can cause.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from imagegen import write_kind
from runhelpers import SAMPLE, assert_user_error, cli_env, run_imgrec
from servehelpers import small_model

from imgrec.data.inputs import expand_sources
from imgrec.errors import ImgrecError
from imgrec.infer.on_ray import _first_answers
from imgrec.infer.parts import OutputParts, read_parts

EXIT_SKIPPED = 5


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("broken")
    write_kind(folder, "truncated_jpeg")
    write_kind(folder, "text_as_png")
    return folder


def _local_csv(path: Path) -> dict[str, dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


# ---- end to end on a local Ray cluster --------------------------------------------------------
@pytest.mark.slow
def test_ray_answers_every_file_once_as_local_predict_does(model, broken, tmp_path):
    out = tmp_path / "ray"
    ray = run_imgrec("predict", model, SAMPLE, broken, "--on", "ray", "--out", out, "-k", "2")
    assert ray.returncode == EXIT_SKIPPED, ray.stderr
    assert "2 input(s) could not be read" in ray.stderr and "Traceback" not in ray.stderr
    local = run_imgrec("predict", model, SAMPLE, broken, "-f", "csv", "-o", tmp_path / "l.csv")
    assert local.returncode == EXIT_SKIPPED, local.stderr
    expected = _local_csv(tmp_path / "l.csv")

    rows = read_parts(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(expected)  # every input, exactly once
    for row in rows:
        mine = expected[row["path"]]
        if row["error"] is not None:
            assert mine["skipped"] and row["label"] is None
            continue
        assert row["label"] == mine["class1"] == row["classes"][0]
        assert abs(row["confidence"] - float(mine["prob1"])) < 1e-5
        assert len(row["classes"]) == len(row["probabilities"]) == 2
    assert sum(r["error"] is not None for r in rows) == 2


@pytest.mark.slow
def test_embeddings_on_ray_equal_local_ones_and_resume_fills_only_the_gap(model, tmp_path):
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    args = ("embed", model, SAMPLE, "--part-size", "50")
    ray = run_imgrec(*args, "--on", "ray", "--out", ray_out)
    assert ray.returncode == 0, ray.stderr
    local = run_imgrec(*args, "--out", local_out)
    assert local.returncode == 0, local.stderr
    mine = {r["path"]: np.array(r["embedding"]) for r in read_parts(ray_out).to_pylist()}
    theirs = {r["path"]: np.array(r["embedding"]) for r in read_parts(local_out).to_pylist()}
    assert mine.keys() == theirs.keys() and len(mine) == len(list(SAMPLE.rglob("*.jpg")))
    assert max(np.abs(mine[p] - theirs[p]).max() for p in mine) < 1e-4

    # a crash lost the last part and left a temporary file: --resume does only what is missing
    parts = sorted(ray_out.glob("part-*.parquet"))
    lost = len(pa.parquet.read_table(parts[-1]))
    parts[-1].unlink()
    (ray_out / ".part-00009.parquet.tmp").write_bytes(b"half a part")
    again = run_imgrec("embed", model, SAMPLE, "--on", "ray", "--out", ray_out, "--resume")
    assert again.returncode == 0, again.stderr
    assert f"wrote {lost} rows" in again.stdout and f"{len(mine) - lost} already" in again.stdout
    paths = read_parts(ray_out).column("path").to_pylist()
    assert sorted(paths) == sorted(mine)
    assert not list(ray_out.glob(".*.tmp"))


@pytest.mark.slow
def test_audit_on_ray_finds_what_the_local_audit_finds(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    leaked = next((data / "train" / "ants").glob("*.jpg"))
    shutil.copyfile(leaked, data / "val" / "ants" / "copy-of-train.jpg")  # leakage
    write_kind(data / "train" / "bees", "truncated_jpeg")
    found = {}
    for on in ("local", "ray"):
        result = run_imgrec("audit", data, "--out", tmp_path / on, "--on", on, "-q")
        assert result.returncode == 3, result.stderr  # leakage and an unreadable file block
        found[on] = json.loads((tmp_path / on / "audit.json").read_text())
    local, ray = found["local"], found["ray"]
    assert any(g["leakage"] for g in ray["duplicate_groups"])
    assert [f["path"] for f in ray["findings"] if f["check"] == "unreadable"] == [
        str(data / "train" / "bees" / "truncated.jpg")
    ]

    def files(report: dict) -> list:
        return sorted(tuple(f["path"] for f in g["files"]) for g in report["duplicate_groups"])

    def findings(report: dict) -> set:
        return {(f["check"], f["path"]) for f in report["findings"]}

    assert files(ray) == files(local)
    assert findings(ray) == findings(local)  # label suspects and odd images too


@pytest.mark.slow
def test_ray_reads_a_bucket_with_credentials_from_the_environment(s3_env, model, tmp_path):
    url = s3_env.upload_tree(SAMPLE / "val", "rayphotos", "photos")
    s3_env.put("s3://rayphotos/photos/broken.jpg", b"not an image")
    out = tmp_path / "preds"
    result = subprocess.run(
        [sys.executable, "-m", "imgrec", "predict", str(model), url, "--on", "ray"]
        + ["--out", str(out), "-f", "csv"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert result.returncode == EXIT_SKIPPED, result.stderr
    with next(out.glob("part-*.csv")).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    expected = {f"{url}/{p.relative_to(SAMPLE / 'val').as_posix()}" for p in SAMPLE.glob("val/*/*")}
    assert {r["path"] for r in rows} == expected | {f"{url}/broken.jpg"}
    assert [r["path"] for r in rows if r["error"]] == [f"{url}/broken.jpg"]


def test_a_missing_bucket_is_one_sentence(s3_env, model, tmp_path):
    result = run_imgrec(
        "predict", model, "s3://no-such-bucket/x/", "--on", "ray", "--out", tmp_path / "o"
    )
    assert_user_error(result, "no-such-bucket")


def test_a_model_a_worker_cannot_load_is_one_sentence(tmp_path):
    """The actor's ONNX session fails to start (a damaged graph): Ray Data gives up on the
    pool, and the job ends with what the worker said."""
    script = (
        "from imgrec.infer.jobs import Job, run_job\n"
        "from imgrec.infer.on_ray import RayOptions\n"
        "from imgrec.infer.stages import PredictHead\n"
        "from imgrec.data.preprocess import Preprocessing\n"
        "from imgrec.errors import ImgrecError\n"
        "import sys\n"
        "job = Job(b'not a graph', PredictHead(['a', 'b']), Preprocessing(64, (0.5,)*3, "
        "(0.5,)*3, 72))\n"
        "try:\n"
        "    run_job(job, [sys.argv[1]], sys.argv[2], on='ray')\n"
        "except ImgrecError as exc:\n"
        "    print(exc)\n"
    )
    photo = next(SAMPLE.rglob("*.jpg"))
    done = subprocess.run(
        [sys.executable, "-c", script, str(photo), str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=180,
    )
    assert "a Ray worker could not start the model" in done.stdout, done.stderr[-2000:]
    assert "protobuf" in done.stdout.lower()


# ---- the errors a user can make, without a cluster ---------------------------------------------
def test_an_unreachable_cluster_is_one_sentence_within_seconds(model, tmp_path):
    result = run_imgrec(
        "predict", model, SAMPLE / "val" / "bees", "--on", "ray", "--address", "127.0.0.1:1",
        "--out", tmp_path / "o", timeout=60,
    )  # fmt: skip
    assert_user_error(result, "cannot reach the Ray cluster at 127.0.0.1:1")


def test_options_that_need_a_cluster_or_a_folder_say_so(model, tmp_path):
    photos = SAMPLE / "val" / "bees"
    assert_user_error(
        run_imgrec("predict", model, photos, "--address", "h:1", "-f", "parquet", "-o", tmp_path),
        "--address names a Ray cluster: add --on ray",
    )
    assert_user_error(run_imgrec("predict", model, photos, "--on", "ray"), "give --out FOLDER")
    assert_user_error(
        run_imgrec("predict", model, photos, "--on", "ray", "-f", "jsonl", "-o", tmp_path / "x"),
        "parquet or csv parts, not jsonl",
    )


def test_without_ray_installed_the_message_names_the_extra(monkeypatch):
    from imgrec.infer import on_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImgrecError, match=r"pip install 'imgrec\[ray\]'"):
        on_ray.ray_module()


def test_parquet_parts_on_the_local_path(model, tmp_path):
    out = tmp_path / "p"
    result = run_imgrec("predict", model, SAMPLE / "val" / "bees", "-f", "parquet", "-o", out)
    assert result.returncode == 0, result.stderr
    table = read_parts(out)
    assert table.num_rows == len(list((SAMPLE / "val" / "bees").glob("*.jpg")))
    assert set(table.column("label").to_pylist()) <= {"ants", "bees"}
    again = run_imgrec("predict", model, SAMPLE / "val" / "bees", "-f", "parquet", "-o", out)
    assert_user_error(again, "already holds 1 output part", "--resume")


# ---- pieces ---------------------------------------------------------------------------------
SCHEMA = pa.schema(
    [("path", pa.string()), ("classes", pa.list_(pa.string())), ("error", pa.string())]
)


def test_parts_are_whole_numbered_and_resume_reads_them_back(tmp_path):
    parts = OutputParts(tmp_path, SCHEMA, "parquet", rows_per_part=2)
    parts.add(pa.table({"path": ["a", "b"], "classes": [["x"], ["y"]], "error": [None, None]}))
    parts.add(pa.table({"path": ["c"], "classes": [None], "error": ["bad"]}))  # the rest
    parts.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    (tmp_path / ".part-00002.parquet.tmp").write_bytes(b"x")
    with pytest.raises(ImgrecError, match="already holds 2 output part"):
        OutputParts(tmp_path, SCHEMA, "parquet")
    with pytest.raises(ImgrecError, match="holds parquet parts"):
        OutputParts(tmp_path, SCHEMA, "csv", resume=True)
    resumed = OutputParts(tmp_path, SCHEMA, "parquet", resume=True)
    assert resumed.done_sources() == {"a", "b", "c"}
    assert not (tmp_path / ".part-00002.parquet.tmp").exists()
    resumed.add(pa.table({"path": ["d"], "classes": [["z"]], "error": [None]}))
    resumed.close()
    assert (tmp_path / "part-00002.parquet").exists()


def test_csv_parts_spread_lists_and_defuse_formulas(tmp_path):
    parts = OutputParts(tmp_path, SCHEMA, "csv")
    parts.add(
        pa.table({"path": ["=cmd()", "b"], "classes": [["x", "y"], None], "error": [None, "bad"]})
    )
    parts.close()
    text = (tmp_path / "part-00000.csv").read_text()
    assert text.splitlines()[0] == "path,class1,class2,error"
    assert "'=cmd()" in text
    assert OutputParts(tmp_path, SCHEMA, "csv", resume=True).done_sources() == {"=cmd()", "b"}


def test_only_the_first_answer_of_a_source_counts():
    seen = np.zeros(5, dtype=bool)
    assert _first_answers(np.array([0, 1, 1, 3]), seen).tolist() == [True, True, False, True]
    assert _first_answers(np.array([3, 4, 0]), seen).tolist() == [False, True, False]
    assert seen.tolist() == [True, True, False, True, True]


def test_sources_from_folders_and_a_csv_of_paths(tmp_path):
    bees = sorted(str(p) for p in (SAMPLE / "val" / "bees").glob("*.jpg"))
    listing = tmp_path / "list.csv"
    listing.write_text("path,other\n" + "".join(f"{p},x\n" for p in bees[:3]))
    assert expand_sources([listing]) == bees[:3]
    both = expand_sources([SAMPLE / "val" / "bees", listing])
    assert both == bees  # each source once, in order
    (tmp_path / "nopath.csv").write_text("file\na.jpg\n")
    with pytest.raises(ImgrecError, match="needs a header with a path column"):
        expand_sources([tmp_path / "nopath.csv"])
