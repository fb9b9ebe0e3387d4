"""The prediction log end to end: `imgrec serve --log` and `imgrec predict --log` write one
SQLite row per prediction; bad uploads write none; `--store-images` keeps copies without any
metadata; retention; the server's shutdown flushes the queue; unusable log files fail at start.

One real server (ONNX engine, --log and --store-images) serves most of the module; a second
short-lived one (PyTorch engine) checks retention through the CLI. The library checks use real
SQLite files in temporary folders.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from imagegen import write_kind
from PIL import Image, ImageCms
from runhelpers import SAMPLE, assert_user_error, read_csv, run_imgrec, sample_files
from servehelpers import running_server, small_model

from imgrec.bundle.format import read_metadata
from imgrec.data.decode import open_image
from imgrec.data.properties import input_properties
from imgrec.errors import ImgrecError
from imgrec.models.signature import SIGNATURE_DIMS
from imgrec.monitor.log_window import window_from_log
from imgrec.prediction_log import writer as log_module
from imgrec.prediction_log.reader import LogReader
from imgrec.prediction_log.schema import COLUMNS, SCHEMA_VERSION, model_id
from imgrec.prediction_log.writer import PredictionLog

pytestmark = pytest.mark.slow

CLASSES = ["ants", "bees"]
GPS_IFD = 0x8825
ORIENTATION = 0x0112
COMMENT = b"taken at 52.5200N 13.4050E by camera serial 0042"


# ---- helpers ----------------------------------------------------------------------------------
def rows(db: Path, where: str = "", params: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM predictions {where}", params)]
    finally:
        conn.close()


def count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    finally:
        conn.close()


def wait_for_rows(db: Path, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while count(db) < n:
        assert time.monotonic() < deadline, f"{count(db)} rows after {timeout} s, expected {n}"
        time.sleep(0.05)


def signature_of(row: dict) -> np.ndarray:
    values = np.frombuffer(row["signature"], dtype="<f2")
    assert values.shape == (SIGNATURE_DIMS,)
    assert np.isfinite(values).all() and np.abs(values).sum() > 0
    return values


def jpeg(colour=(200, 40, 40), size=(64, 48), **save) -> bytes:
    im = Image.new("RGB", size, colour)
    im.paste((0, 0, 0), (0, 0, 8, 8))  # a corner block, so the orientation shows
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def private_jpeg() -> bytes:
    """A 64 x 48 JPEG shown rotated (orientation 6) with GPS, a camera serial, XMP, an ICC
    profile and a comment: everything a stored copy must not keep."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "ExampleCam"
    exif[0xA431] = "SERIAL-0042"  # BodySerialNumber
    exif[GPS_IFD] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 18.0)}
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description GPSLatitude="52,31N"/></x:xmpmeta>'
    return jpeg(exif=exif.tobytes(), icc_profile=icc, xmp=xmp, comment=COMMENT)


def post_raw(client: httpx.Client, data: bytes, name: str) -> httpx.Response:
    return client.post(
        "/v1/predict", content=data, headers={"Content-Type": "image/jpeg", "X-Filename": name}
    )


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sample_files("val", "bees", 2) + sample_files("val", "ants", 2)


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    """(server, log file, image folder, answered): `answered` counts every image this module
    got a 200 for, so the last test can compare it with the rows."""
    folder = tmp_path_factory.mktemp("served")
    db, store = folder / "predictions.db", folder / "images"
    with running_server(
        model, folder / "server.log", "--log", str(db), "--store-images", str(store)
    ) as srv:
        yield srv, db, store, []


@pytest.fixture(scope="module")
def client(served):
    with httpx.Client(base_url=served[0].url, timeout=60) as c:
        yield c


# ---- the server ---------------------------------------------------------------------------------
def test_every_prediction_is_one_row_with_the_answers_fields(served, client, model, photos):
    _, db, _, answered = served
    started = time.time()
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos[:3]]
    several = client.post("/v1/predict", params={"top_k": 1}, files=files)
    single = post_raw(client, photos[3].read_bytes(), photos[3].name)
    again = post_raw(client, photos[0].read_bytes(), "same-photo-again.jpg")
    answers = []
    for response in (several, single, again):
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    answered += answers
    sent = [*photos[:3], photos[3], photos[0]]
    wait_for_rows(db, len(sent))
    logged = rows(db, "ORDER BY id")
    assert len(logged) == len(sent) == 5

    meta_created = read_metadata(model)["created"]
    model_sha = hashlib.sha256(model.read_bytes()).hexdigest()
    for row, answer, path in zip(logged, answers, sent, strict=True):
        assert row["filename"] == answer["filename"]
        assert row["label"] == answer["labels"][0]
        assert row["confidence"] == pytest.approx(answer["probabilities"][0], abs=1e-6)
        top = json.loads(row["top_k"])
        assert [c for c, _ in top] == sorted(CLASSES, key=lambda c: -dict(top)[c])
        assert top[0] == [row["label"], pytest.approx(row["confidence"])]
        assert sum(p for _, p in top) == pytest.approx(1.0, abs=1e-5)
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (row["width"], row["height"]) == open_image(path).size
        assert 0 < row["brightness"] < 1 and 0 < row["contrast"] < 0.5 and row["sharpness"] > 0
        assert row["source"] == "serve" and row["model_id"] == model_sha[:16]
        assert row["model_version"] == meta_created
        assert started - 1 < row["ts"] < time.time() + 1
        signature_of(row)
    # the same photo in a batch of 3 and alone: the same signature (float16 rounding apart)
    np.testing.assert_allclose(
        signature_of(logged[0]), signature_of(logged[4]), rtol=1e-2, atol=2e-2
    )
    assert logged[0]["brightness"] == pytest.approx(logged[4]["brightness"], abs=1e-5)
    metrics = client.get("/metrics").text
    assert "imgrec_log_rows_total 5" in metrics and "imgrec_log_dropped_total 0" in metrics


def test_bad_uploads_make_no_rows(served, client, photos, tmp_path):
    _, db, _, answered = served
    before = count(db)
    truncated = write_kind(tmp_path, "truncated_jpeg").read_bytes()
    good = photos[1].read_bytes()
    mixed = [("files", ("good.jpg", good, "image/jpeg")), ("files", ("bad.jpg", truncated, "x"))]
    assert post_raw(client, truncated, "truncated.jpg").status_code == 422
    assert client.post("/v1/predict", files=mixed).status_code == 422  # the whole request fails
    assert post_raw(client, b"", "empty.jpg").status_code == 422
    wrong_type = client.post("/v1/predict", content=good, headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    # one good request after them: once its row is there, any row of theirs would be too
    last = post_raw(client, good, "after-the-bad-ones.jpg")
    assert last.status_code == 200
    answered += last.json()["predictions"]
    wait_for_rows(db, before + 1)
    time.sleep(0.3)
    assert count(db) == before + 1
    assert rows(db, "ORDER BY id DESC LIMIT 1")[0]["filename"] == "after-the-bad-ones.jpg"


def test_stored_copy_has_no_metadata_and_keeps_the_orientation(served, client):
    _, db, store, answered = served
    data = private_jpeg()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the input does have GPS
    response = post_raw(client, data, "private.jpg")
    assert response.status_code == 200, response.text
    answered += response.json()["predictions"]
    digest = hashlib.sha256(data).hexdigest()
    deadline = time.monotonic() + 30
    while not (found := rows(db, "WHERE sha256 = ?", (digest,))):
        assert time.monotonic() < deadline, "no row for the uploaded image"
        time.sleep(0.05)
    row = found[0]
    stored = Path(row["image_path"])
    assert stored == (store / f"{digest}.jpg").absolute() and stored.is_file()
    raw = stored.read_bytes()
    for marker in (b"Exif", b"ICC_PROFILE", b"xmpmeta", b"ns.adobe.com", COMMENT, b"SERIAL"):
        assert marker not in raw, f"{marker!r} survived in the stored copy"
    with Image.open(stored) as copy:
        assert not copy.getexif() and not copy.getexif().get_ifd(GPS_IFD)
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(copy.info)
        assert copy.size == (48, 64)  # the orientation is applied, not dropped
        shown = np.asarray(open_image(data), dtype=float)
        assert np.abs(np.asarray(copy.convert("RGB"), dtype=float) - shown).mean() < 3
    assert (row["width"], row["height"]) == (48, 64)
    assert stored.stat().st_mode & 0o077 == 0  # readable by the server's user only


def test_server_shutdown_flushes_every_row(served, client, photos):
    """SIGTERM right after a burst of requests: every answered image has its row."""
    server, db, _, answered = served
    bodies = [(p.read_bytes(), f"burst-{i}-{p.name}") for i in range(4) for p in photos]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda b: post_raw(client, *b), bodies))
    assert all(r.status_code == 200 for r in responses)
    for r in responses:
        answered += r.json()["predictions"]
    server.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM), server.log_text()[-2000:]
    assert "Application shutdown complete" in server.log_text()
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
    assert count(db) == len(answered)
    assert sorted(r["filename"] for r in rows(db)) == sorted(a["filename"] for a in answered)


def test_retention_by_rows_through_the_cli(model, photos, tmp_path):
    db = tmp_path / "kept.db"
    args = ("--engine", "torch", "--log", str(db), "--log-max-rows", "2")
    with running_server(model, tmp_path / "server.log", *args) as server:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for i, photo in enumerate(photos[:4]):
                assert post_raw(c, photo.read_bytes(), f"{i}.jpg").status_code == 200
        server.process.terminate()
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM), server.log_text()[-2000:]
    assert [r["filename"] for r in rows(db, "ORDER BY id")] == ["2.jpg", "3.jpg"]


# ---- imgrec predict --log -----------------------------------------------------------------------
def test_predict_log_records_the_same_rows(model, photos, tmp_path):
    bad = write_kind(tmp_path, "text_as_png")
    db, out = tmp_path / "predict.db", tmp_path / "out.csv"
    args = ["--engine", "torch", "-f", "csv", "-o", out, "--log", db, "-q"]
    result = run_imgrec("predict", model, *photos, bad, *args)
    assert result.returncode == 5, result.stderr  # 5: a file was skipped
    csv_rows = {r["path"]: r for r in read_csv(out) if not r["skipped"]}
    logged = rows(db, "ORDER BY id")
    assert [r["filename"] for r in logged] == [str(p) for p in photos]  # not the bad file
    for row, photo in zip(logged, photos, strict=True):
        assert row["source"] == "predict" and row["image_path"] is None
        assert row["label"] == csv_rows[str(photo)]["class1"]
        assert row["confidence"] == pytest.approx(float(csv_rows[str(photo)]["prob1"]), abs=1e-6)
        assert row["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
        assert (row["width"], row["height"]) == open_image(photo).size
        signature_of(row)


def test_unusable_log_path_is_a_one_line_error(model, tmp_path):
    missing = tmp_path / "no-such-folder" / "p.db"
    served = run_imgrec("serve", model, "--engine", "torch", "--log", missing, "--port", "1")
    assert_user_error(served, "does not exist")
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("these are notes, not a database\n" * 20)
    photo = sample_files("val", "ants", 1)
    predicted = run_imgrec("predict", model, *photo, "--engine", "torch", "--log", not_sqlite)
    assert_user_error(predicted, "not an SQLite database")
    assert not_sqlite.read_text().startswith("these are notes")  # left as it was


# ---- the library ------------------------------------------------------------------------------
def _probs(n: int) -> np.ndarray:
    p = np.linspace(0.55, 0.95, n, dtype=np.float32)
    return np.stack([p, 1 - p], axis=1)


def _open(tmp_path: Path, model: Path, **kwargs) -> PredictionLog:
    return PredictionLog(tmp_path / "p.db", model, CLASSES, **kwargs)


def test_close_writes_everything_that_was_queued(model, tmp_path):
    images = [jpeg((i, 100, 200)) for i in range(20)]
    log = _open(tmp_path, model, source="predict")
    for start in range(0, 3000, 20):
        names = [f"{start + i}.jpg" for i in range(20)]
        assert log.record(names, _probs(20), images) == 20
    log.close()
    assert log.rows_written == count(tmp_path / "p.db") == 3000 and log.rows_dropped == 0
    first = rows(tmp_path / "p.db", "WHERE filename = '0.jpg'")[0]
    assert first["signature"] is None and first["brightness"] is None  # not given: NULL
    assert first["label"] == "ants" and first["confidence"] == pytest.approx(0.55)


def test_input_properties_are_measured_on_the_model_input(model, tmp_path):
    """The log's thread measures what input_properties gives for the same batch, also when
    requests of one image each are measured together."""
    from imgrec import ImageClassifier

    preprocessing = ImageClassifier.load(model).preprocessing
    x = torch.randn(40, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.5
    with _open(tmp_path, model, preprocessing=preprocessing) as log:
        log.record([f"{i}" for i in range(30)], _probs(30), [jpeg()] * 30, inputs=x[:30].numpy())
        for i in range(30, 40):
            log.record([f"{i}"], _probs(1), [jpeg()], inputs=x[i : i + 1])
    logged = rows(tmp_path / "p.db", "ORDER BY id")
    measured = [[r["brightness"], r["contrast"], r["sharpness"]] for r in logged]
    np.testing.assert_allclose(measured, input_properties(x, preprocessing), rtol=1e-5)


def test_a_slow_disk_drops_rows_instead_of_waiting(model, tmp_path, monkeypatch):
    monkeypatch.setattr(log_module, "MAX_PENDING_ROWS", 50)
    log = _open(tmp_path, model)
    blocker = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    accepted, slowest = 0, 0.0
    for i in range(40):
        start = time.perf_counter()
        accepted += log.record([f"{i}a", f"{i}b"], _probs(2), [jpeg(), jpeg()])
        slowest = max(slowest, time.perf_counter() - start)
    blocker.execute("COMMIT")
    blocker.close()
    log.close()
    assert slowest < 0.5  # never waits for the disk
    assert log.rows_dropped > 0 and accepted + log.rows_dropped == 80
    assert count(tmp_path / "p.db") == log.rows_written == accepted


def test_retention_deletes_old_rows_and_their_images(model, tmp_path):
    db, store = tmp_path / "p.db", tmp_path / "images"
    images = [jpeg((40 * i, 90, 90)) for i in range(5)]
    with _open(tmp_path, model, store_images=store, max_rows=3) as log:
        for i, data in enumerate(images):
            log.record([f"{i}.jpg"], _probs(1), [data])
    assert [r["filename"] for r in rows(db, "ORDER BY id")] == ["2.jpg", "3.jpg", "4.jpg"]
    kept = {hashlib.sha256(d).hexdigest() + ".jpg" for d in images[2:]}
    assert {p.name for p in store.iterdir()} == kept
    conn = sqlite3.connect(db)
    conn.execute("UPDATE predictions SET ts = ts - 3 * 86400 WHERE filename != '4.jpg'")
    conn.commit()
    conn.close()
    with _open(tmp_path, model, store_images=store, max_days=2):
        pass  # retention also runs when a log opens
    assert [r["filename"] for r in rows(db)] == ["4.jpg"]
    assert [p.name for p in store.iterdir()] == [hashlib.sha256(images[4]).hexdigest() + ".jpg"]


def _newer_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE log_info (schema_version INTEGER)")
    conn.execute("INSERT INTO log_info VALUES (2)")
    conn.commit()
    conn.close()


def _foreign_table(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE predictions (id INTEGER PRIMARY KEY, what TEXT)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x00not sqlite" * 100), "is not an SQLite database"),
        (_newer_schema, "schema version 2, written by a newer imgrec"),
        (_foreign_table, "not an imgrec prediction log"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_unusable_log_files_are_refused_at_open(model, tmp_path, make, message):
    path = tmp_path / "p.db"
    make(path)
    with pytest.raises(ImgrecError, match=message) as caught:
        PredictionLog(path, model, CLASSES)
    assert "\n" not in str(caught.value)


def test_the_reader_reads_back_every_column_the_writer_writes(model, tmp_path):
    """One contract (prediction_log/schema.py): a row written by PredictionLog reads back through
    LogReader with every column and value, and monitor's drift window reads it too."""
    data = jpeg(size=(64, 48))
    properties = np.array([[0.25, 0.125, 1.5]], dtype=np.float32)
    signature = np.linspace(-1, 1, SIGNATURE_DIMS, dtype=np.float32)[None]
    before = time.time()
    store = tmp_path / "images"
    with _open(tmp_path, model, source="predict", store_images=store) as log:
        log.record(
            ["a.jpg"], _probs(1), [data], signatures=signature, properties=properties,
            labels=["unknown"],
        )  # fmt: skip
    with LogReader(tmp_path / "p.db") as reader:
        (row,) = reader.rows()
        assert reader.model_counts() == {model_id(model): 1}
    assert row.keys() == list(COLUMNS)
    digest = hashlib.sha256(data).hexdigest()
    assert before - 1 < row["ts"] < time.time() + 1
    assert row["model_id"] == hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    assert row["model_version"] == read_metadata(model)["created"]
    assert (row["source"], row["filename"], row["sha256"]) == ("predict", "a.jpg", digest)
    assert (row["width"], row["height"]) == (64, 48)
    measured = [row["brightness"], row["contrast"], row["sharpness"]]
    np.testing.assert_allclose(measured, properties[0], rtol=1e-6)
    assert (row["label"], row["confidence"]) == ("unknown", pytest.approx(0.55))
    top_k = [["ants", pytest.approx(0.55)], ["bees", pytest.approx(0.45)]]
    assert json.loads(row["top_k"]) == top_k
    np.testing.assert_allclose(np.frombuffer(row["signature"], "<f2"), signature[0], atol=1e-3)
    assert Path(row["image_path"]) == (store / f"{digest}.jpg").absolute()
    window = window_from_log(tmp_path / "p.db", model=model_id(model))
    assert window.labels.tolist() == ["ants"]  # the model's top class, not the abstention
    np.testing.assert_allclose(window.properties[0], [0.25, 0.125, 1.5, 64, 48], rtol=1e-6)


def test_a_newer_schema_is_refused_by_writer_and_reader_alike(model, tmp_path):
    db = tmp_path / "p.db"
    with _open(tmp_path, model):
        pass
    conn = sqlite3.connect(db)
    conn.execute("UPDATE log_info SET schema_version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    newer = f"schema version {SCHEMA_VERSION + 1}, written by a newer imgrec"
    for open_log in (
        lambda: PredictionLog(db, model, CLASSES),
        lambda: LogReader(db),
        lambda: window_from_log(db),
    ):
        with pytest.raises(ImgrecError, match=newer) as caught:
            open_log()
        message = str(caught.value)
        assert "\n" not in message and message.endswith(".") and message.count(". ") == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT schema_version FROM log_info").fetchall() == [(SCHEMA_VERSION + 1,)]
    conn.close()


def test_store_folder_that_is_a_file_is_refused(model, tmp_path):
    (tmp_path / "images").write_text("a file")
    with pytest.raises(ImgrecError, match="cannot store images in"):
        _open(tmp_path, model, store_images=tmp_path / "images")


def test_reopening_a_log_appends(model, tmp_path):
    for _ in range(2):
        with _open(tmp_path, model) as log:
            log.record(["a.jpg"], _probs(1), [jpeg()])
    assert count(tmp_path / "p.db") == 2
    conn = sqlite3.connect(tmp_path / "p.db")
    assert conn.execute("SELECT schema_version FROM log_info").fetchall() == [(1,)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_help_names_the_log_options():
    result = run_imgrec("serve", "--help")
    assert result.returncode == 0
    for option in ("--log", "--store-images", "--log-max-rows", "--log-max-days"):
        assert option in result.stdout
    assert "--log" in run_imgrec("predict", "--help").stdout


def test_log_options_without_log_are_refused(model, tmp_path):
    from imgrec.serve import ServeSettings, create_app

    for settings in (ServeSettings(store_images=tmp_path), ServeSettings(log_max_rows=10)):
        with pytest.raises(ImgrecError, match="need --log FILE"):
            create_app(model, settings)  # before the model loads: nothing else to wait for
    assert list(tmp_path.iterdir()) == []


def test_drift_reads_the_log_that_predict_writes(model, tmp_path):
    """The writer and the reader of the schema agree: abstentions are logged as 'unknown', yet
    drift compares the model's top classes, and every logged row is in the current window."""
    photos = sample_files("val", "ants", 12) + sample_files("val", "bees", 12)
    db, out = tmp_path / "predict.db", tmp_path / "out.csv"
    args = ["-f", "csv", "-o", out, "--log", db, "--min-confidence", "0.999", "-q"]
    assert run_imgrec("predict", model, *photos, *args).returncode == 0
    logged = rows(db)
    assert len(logged) == 24 and "unknown" in {r["label"] for r in logged}
    reference = Path(SAMPLE) / "val"
    result = run_imgrec(
        "drift", model, "--reference", reference, "--current", db, "--out", tmp_path / "drift"
    )
    assert result.returncode in (0, 3), result.stderr
    report = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert report["current"]["images"] == 24 and report["current"]["with_signature"] == 24
    mix = next(t for t in report["tests"] if "class" in t["name"].lower())
    assert "unknown" not in json.dumps(mix)


# ---- imgrec predict --log killed with SIGKILL, then --resume ------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A from-scratch CNN at 32 px trained for one epoch on 8 generated images: it predicts
    hundreds of images a second, so a killed-and-resumed run takes seconds."""
    from imagegen import CLASS_COLOURS, write_rgb

    from imgrec import ImageClassifier, load_dataset

    base = tmp_path_factory.mktemp("tiny")
    for label, colour in (("red", CLASS_COLOURS[0]), ("blue", CLASS_COLOURS[1])):
        for i in range(4):
            write_rgb(base / "data" / label / f"{i}.png", (64, 64), colour)
    clf = ImageClassifier("cnn-scratch", image_size=32, epochs=1, seed=0)
    clf.fit(load_dataset(base / "data"), progress=False)
    clf.save(base / "tiny.imgrec")
    return base / "tiny.imgrec"


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    from imagegen import CLASS_COLOURS, write_rgb

    folder = tmp_path_factory.mktemp("many")
    for i in range(600):
        write_rgb(folder / f"{i:04d}.png", (64, 64), CLASS_COLOURS[i % len(CLASS_COLOURS)])
    return folder


def _csv_paths(path: Path) -> list[str]:
    return [r["path"] for r in read_csv(path) if not r["skipped"]]


def _kill_when(process, out: Path, at_rows: int) -> int:
    """SIGKILL `process` once `out` holds `at_rows` data rows (polled every 2 ms); the number
    of rows it held when the signal went out, or -1 if the process had already finished."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        held = out.read_bytes().count(b"\n") - 1 if out.exists() else 0
        if held >= at_rows:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return held
        time.sleep(0.002)
    process.wait(timeout=120)
    return -1


def test_predict_log_holds_every_output_row_after_kill_9_and_resume(
    tiny_model, many_images, tmp_path
):
    """Finding: with 600 images and batches of 8, SIGKILL lost up to 7 batches from the log
    (the CSV had 600 rows, the log 568) and --resume did not add them back. Now a batch's rows
    reach the output only once the log has committed them, and a resumed run does not log
    twice what the killed run logged but did not write out."""
    import random
    import subprocess
    import sys

    from runhelpers import cli_env

    db, out = tmp_path / "p.db", tmp_path / "p.csv"
    command = [sys.executable, "-m", "imgrec", "predict", str(tiny_model), str(many_images)]
    command += ["-f", "csv", "-o", str(out), "--log", str(db), "--batch-size", "8", "-q"]
    moments = [1, *random.Random(15).sample(range(40, 560), 2)]
    interrupted = 0
    for i, at_rows in enumerate(moments):
        resume = ["--resume"] if i else []
        process = subprocess.Popen(
            command + resume, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        held = _kill_when(process, out, at_rows)
        interrupted += 0 <= held < 600
        in_csv, in_log = _csv_paths(out), [r["filename"] for r in rows(db)]
        assert set(in_csv) <= set(in_log), f"killed at {held} rows: the log lacks output rows"
        assert len(in_log) == len(set(in_log)), f"killed at {held} rows: duplicates in the log"
    assert interrupted, "every run finished before the kill: the test checked nothing"
    done = subprocess.run(command + ["--resume"], env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    in_csv, in_log = _csv_paths(out), [r["filename"] for r in rows(db)]
    assert len(in_csv) == len(set(in_csv)) == 600
    assert sorted(in_log) == sorted(in_csv)  # the same paths, each once
