"""`imgrec serve` end to end: a real uvicorn server in a subprocess, real HTTP requests.

One server (API key required, 1 MB upload limit) serves every test of this module, so the
metrics it reports and its survival at the end cover everything that was thrown at it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from imagegen import png_bomb_bytes, write_kind
from runhelpers import sample_files
from servehelpers import running_server, small_model

from imgrec import ImageClassifier
from imgrec.serve.uploads import FILE_BATCH_TYPE

pytestmark = pytest.mark.slow

KEY = "test-key-0123456789"
HEADERS = {"X-API-Key": KEY}
ATOL = 1e-5  # a batch of 16 and a batch of 1 may round the last float bits differently


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with running_server(
        model, log, "--api-key-env", "IMGREC_TEST_KEY", "--max-upload-mb", "1",
        env={"IMGREC_TEST_KEY": KEY},
    ) as srv:  # fmt: skip
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def clf(model) -> ImageClassifier:
    return ImageClassifier.load(model)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sample_files("val", "bees", 3) + sample_files("val", "ants", 3)


def _multipart(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def _assert_same(served: dict, expected, filename: str) -> None:
    assert served["filename"] == filename
    assert served["labels"] == expected.classes
    np.testing.assert_allclose(served["probabilities"], expected.probabilities, atol=ATOL)


def _metric(client: httpx.Client, line_start: str) -> float:
    text = client.get("/metrics").text
    values = [float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line_start)]
    return values[0] if values else 0.0


# ---- predictions equal the Python API's ---------------------------------------------------------
def test_multipart_with_several_files_equals_predict(client, clf, photos):
    response = client.post("/v1/predict", params={"top_k": 2}, files=_multipart(photos))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["latency_ms"] > 0
    expected = clf.predict(photos, top_k=2)
    assert len(body["predictions"]) == len(photos)
    for served, want, path in zip(body["predictions"], expected, photos, strict=True):
        _assert_same(served, want, path.name)


def test_a_file_batch_equals_predict(client, clf, photos):
    manifest = json.dumps([{"name": p.name, "size": p.stat().st_size} for p in photos])
    body = b"".join([manifest.encode() + b"\n", *(p.read_bytes() for p in photos)])
    response = client.post(
        "/v1/predict", params={"top_k": 2}, content=body, headers={"Content-Type": FILE_BATCH_TYPE}
    )
    assert response.status_code == 200, response.text
    expected = clf.predict(photos, top_k=2)
    for served, want, path in zip(response.json()["predictions"], expected, photos, strict=True):
        _assert_same(served, want, path.name)


def test_raw_image_body_equals_predict(client, clf, photos):
    photo = photos[0]
    response = client.post(
        "/v1/predict",
        content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg", "X-Filename": photo.name},
    )
    assert response.status_code == 200, response.text
    [served] = response.json()["predictions"]
    _assert_same(served, clf.predict(photo, top_k=3)[0], photo.name)


def test_top_k(client, photos):
    files = _multipart(photos[:1])
    one = client.post("/v1/predict", params={"top_k": 1}, files=files).json()["predictions"][0]
    assert len(one["labels"]) == len(one["probabilities"]) == 1
    many = client.post("/v1/predict", params={"top_k": 50}, files=files).json()["predictions"][0]
    assert sorted(many["labels"]) == ["ants", "bees"]  # clamped to the number of classes
    assert many["probabilities"] == sorted(many["probabilities"], reverse=True)
    bad = client.post("/v1/predict", params={"top_k": 0}, files=files)
    assert bad.status_code == 422 and "top_k" in bad.json()["error"]


def test_min_confidence_per_request(client, photos):
    files = _multipart(photos[:2])
    plain = client.post("/v1/predict", files=files).json()
    assert plain["min_confidence"] == 0.0
    assert [p["label"] for p in plain["predictions"]] == [
        p["labels"][0] for p in plain["predictions"]
    ]
    top = max(p["probabilities"][0] for p in plain["predictions"])
    for how in ({"params": {"min_confidence": 0.999999}}, {"data": {"min_confidence": "0.999999"}}):
        body = client.post("/v1/predict", files=files, **how).json()
        assert body["min_confidence"] == 0.999999
        for served, before in zip(body["predictions"], plain["predictions"], strict=True):
            assert served["label"] == ("unknown" if top < 0.999999 else served["labels"][0])
            assert served["labels"] == before["labels"]  # the guesses stay listed
            np.testing.assert_allclose(served["probabilities"], before["probabilities"], atol=ATOL)
    both_bad_form = {"params": {"min_confidence": 0.5}, "data": {"min_confidence": "-1"}}
    twice = {"data": {"min_confidence": ["0.5", "0.9"]}}
    for how in (
        twice,
        {"params": {"min_confidence": 1}},
        {"data": {"min_confidence": "high"}},
        both_bad_form,
    ):
        bad = client.post("/v1/predict", files=files, **how)
        assert bad.status_code == 422 and "min_confidence" in bad.json()["error"]


def test_server_wide_min_confidence(model, photos, tmp_path):
    with running_server(model, tmp_path / "log", "--min-confidence", "0.999999") as srv:
        body = httpx.post(f"{srv.url}/v1/predict", files=_multipart(photos[:1]), timeout=60).json()
    [served] = body["predictions"]
    assert body["min_confidence"] == 0.999999
    want = "unknown" if served["probabilities"][0] < 0.999999 else served["labels"][0]
    assert served["label"] == want and len(served["labels"]) == 2


def test_model_info(client, model):
    info = client.get("/v1/model")
    assert info.status_code == 200
    body = info.json()
    assert body["classes"] == ["ants", "bees"]
    assert body["backbone"] == "efficientnet_lite0"
    meta = ImageClassifier.load(model).metadata
    assert body["preprocessing"] == meta["preprocessing"]
    assert "metrics" in body and body["max_upload_bytes"] == 1024 * 1024


def test_health_and_page_need_no_key_docs_do(server, client):
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert anonymous.get("/healthz").json()["status"] == "ok"
        assert anonymous.get("/docs").status_code == 401  # the schema names the classes
        assert anonymous.get("/openapi.json").status_code == 401
        assert client.get("/docs").status_code == 200
        assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
        page = anonymous.get("/")
        assert page.status_code == 200 and 'type="file"' in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN, no fonts


def test_metrics_count_up(client, photos):
    requests = 'imgrec_requests_total{endpoint="/v1/predict",status="200"}'
    before = _metric(client, requests), _metric(client, "imgrec_images_predicted_total")
    assert client.post("/v1/predict", files=_multipart(photos[:2])).status_code == 200
    after = _metric(client, requests), _metric(client, "imgrec_images_predicted_total")
    assert after == (before[0] + 1, before[1] + 2)
    text = client.get("/metrics").text
    assert "# TYPE imgrec_request_duration_seconds histogram" in text
    assert 'imgrec_request_duration_seconds_bucket{endpoint="/v1/predict",le="+Inf"}' in text


# ---- bad input: 4xx with a JSON error, never a 500 ----------------------------------------------
def test_oversized_upload_is_413(client):
    big = bytes(1024 * 1024 + 1)
    for response in (
        client.post("/v1/predict", files=[("files", ("big.jpg", big, "image/jpeg"))]),
        client.post("/v1/predict", content=big, headers={"Content-Type": "image/jpeg"}),
        # chunked transfer: no Content-Length, the limit is enforced while reading
        client.post(
            "/v1/predict",
            content=iter([big[:600_000], big[600_000:]]),
            headers={"Content-Type": "image/jpeg"},
        ),
    ):
        assert response.status_code == 413, response.text
        assert "1 MB" in response.json()["error"]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated_jpeg", "truncated image"),
        ("text_as_png", "not an image"),
        ("png_bomb", "decompression bomb"),
        ("zero_bytes", "zero bytes"),
    ],
)
def test_unreadable_upload_is_422(client, tmp_path, kind, reason):
    path = write_kind(tmp_path, kind)
    data = path.read_bytes()
    multipart = client.post("/v1/predict", files=[("files", (path.name, data, "image/png"))])
    raw = client.post(
        "/v1/predict", content=data, headers={"Content-Type": "image/png", "X-Filename": path.name}
    )
    for response in (multipart, raw):
        assert response.status_code == 422, response.text
        body = response.json()
        assert reason in body["error"] and body["filename"] == path.name


def test_one_bad_file_among_good_ones_names_it(client, photos):
    files = _multipart(photos[:2]) + [("files", ("bomb.png", png_bomb_bytes(), "image/png"))]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == 422
    assert response.json()["filename"] == "bomb.png"


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_wrong_content_type_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/predict", content=b'{"image": 1}', headers=headers)
    assert response.status_code == 415, response.text
    assert "multipart/form-data" in response.json()["error"]


def test_multipart_without_files_is_422(client):
    response = client.post("/v1/predict", data={"other": "x"}, files=[("x", ("a", b"1", "a/b"))])
    assert response.status_code == 422
    assert "files" in response.json()["error"]


def test_api_key(server, photos):
    files = _multipart(photos[:1])
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
            for response in (
                anonymous.post("/v1/predict", files=files, headers=headers),
                anonymous.get("/v1/model", headers=headers),
            ):
                assert response.status_code == 401
                assert "X-API-Key" in response.json()["error"]
        assert anonymous.post("/v1/predict", files=files, headers=HEADERS).status_code == 200


# ---- micro-batching -----------------------------------------------------------------------------
def test_concurrent_requests_match_sequential_ones(client, photos):
    jobs = [photos[i % len(photos)] for i in range(16)]

    def ask(path: Path) -> dict:
        response = client.post("/v1/predict", files=_multipart([path]))
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]

    sequential = {p.name: ask(p) for p in photos}
    batches_before = _metric(client, "imgrec_batch_size_count")
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(ask, jobs))
    batches = _metric(client, "imgrec_batch_size_count") - batches_before
    for served, path in zip(concurrent, jobs, strict=True):
        want = sequential[path.name]
        assert served["filename"] == path.name and served["labels"] == want["labels"]
        np.testing.assert_allclose(served["probabilities"], want["probabilities"], atol=ATOL)
    assert batches < 16, f"16 concurrent requests ran as {batches:.0f} forward passes"


# ---- the server itself --------------------------------------------------------------------------
def test_serving_does_not_load_the_training_engine(model):
    code = (
        "import sys, json; from imgrec.serve import create_app; create_app(sys.argv[1]); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('lightning', "
        "'pytorch_lightning', 'imgrec.train.fit', 'imgrec.export')))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_bad_model_file_is_one_line_error(tmp_path):
    from runhelpers import assert_user_error, run_imgrec

    fake = tmp_path / "model.imgrec"
    fake.write_bytes(b"not a model")
    assert_user_error(run_imgrec("serve", fake, "--port", "1"), "not an imgrec model file")


def test_server_is_still_alive_and_logged_no_traceback(server, client):
    assert server.alive(), server.log_text()[-3000:]
    assert client.get("/healthz").status_code == 200
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
    assert _metric(client, 'imgrec_requests_total{endpoint="/v1/predict",status="500"}') == 0


def test_help_shows_an_example():
    from runhelpers import run_imgrec

    result = run_imgrec("serve", "--help")
    assert result.returncode == 0
    assert "Example: IMGREC_KEY=s3cret imgrec serve" in result.stdout


def test_min_confidence_out_of_range_is_one_line_error(model):
    from runhelpers import assert_user_error, run_imgrec

    assert_user_error(run_imgrec("serve", model, "--min-confidence", "1"), "below 1")


def test_missing_key_variable_is_one_line_error(model):
    from runhelpers import assert_user_error, run_imgrec

    assert_user_error(
        run_imgrec("serve", model, "--api-key-env", "IMGREC_NO_SUCH_VARIABLE"),
        "IMGREC_NO_SUCH_VARIABLE",
    )
