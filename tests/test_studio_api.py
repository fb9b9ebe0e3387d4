"""The studio's HTTP API against every bad input the page may send, on the real app.

Each answer is a 4xx with one sentence in `error`, and the project on disk is unharmed
(still an ordinary dataset that `load_dataset` reads). The server-killed cases run a real
`imgrec studio` process in test_studio_restart.py.
"""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from imagegen import png_bomb_bytes, write_rgb
from starlette.testclient import TestClient

from imgrec.data.dataset import load_dataset
from imgrec.serve.uploads import FILE_BATCH_TYPE
from imgrec.studio.app import StudioSettings, create_app

ORIGIN = {"Origin": "http://127.0.0.1:8765"}


@pytest.fixture
def api(tmp_path):
    app = create_app(StudioSettings(home=tmp_path / "home", max_upload_mb=8))
    with TestClient(app, base_url="http://127.0.0.1:8765", headers=ORIGIN) as client:
        yield client


def jpeg(colour=(200, 30, 30), size=(64, 48)) -> bytes:
    out = io.BytesIO()
    from PIL import Image

    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def new_project(api, name="Pets", classes=("cats", "dogs")) -> str:
    answer = api.post("/api/projects", json={"name": name})
    assert answer.status_code == 201, answer.text
    pid = answer.json()["id"]
    for cls in classes:
        assert api.post(f"/api/projects/{pid}/classes", json={"name": cls}).status_code == 201
    return pid


def upload(api, pid, cls, files, way="multipart"):
    """POST `files` [(name, bytes)] to a class as multipart (curl -F) or as the page's file
    batch (a line of JSON, then the bytes)."""
    path = f"/api/projects/{pid}/classes/{cls}/images"
    if way == "batch":
        manifest = json.dumps([{"name": name, "size": len(data)} for name, data in files])
        body = b"".join([manifest.encode() + b"\n", *(data for _, data in files)])
        return api.post(path, content=body, headers={"Content-Type": FILE_BATCH_TYPE})
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return api.post(path, files=parts)


def error_of(answer, status):
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert message and "Traceback" not in message
    return message


def data_folder(api, pid) -> Path:
    return Path(api.get("/api/info").json()["home"]) / pid / "data"


@pytest.mark.parametrize("way", ["multipart", "batch"])
def test_good_images_land_and_bad_ones_are_listed_with_reasons(api, tmp_path, way):
    pid = new_project(api)
    truncated = jpeg()[:200]
    answer = upload(
        api,
        pid,
        "cats",
        [
            ("a.jpg", jpeg()),
            ("a.jpg", jpeg((10, 200, 10))),  # the same name twice: both kept
            ("notes.jpg", b"not an image at all"),
            ("cut.jpg", truncated),
            ("bomb.png", png_bomb_bytes()),
        ],
        way,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["added"]) == 2
    assert len({image["name"] for image in body["added"]}) == 2
    assert {r["filename"] for r in body["rejected"]} == {"notes.jpg", "cut.jpg", "bomb.png"}
    assert all(r["error"] for r in body["rejected"])
    listed = api.get(f"/api/projects/{pid}/classes/cats/images").json()
    assert listed["total"] == 2
    thumb = api.get(listed["images"][0]["thumb"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert len(load_dataset(data_folder(api, pid)).samples) == 2


def test_a_file_batch_that_does_not_match_its_list_adds_nothing(api):
    pid = new_project(api)
    path = f"/api/projects/{pid}/classes/cats/images"
    good = jpeg()

    def send(body: bytes):
        return api.post(path, content=body, headers={"Content-Type": FILE_BATCH_TYPE})

    line = json.dumps([{"name": "a.jpg", "size": len(good)}, {"name": "b.jpg", "size": 10}])
    cases = {
        line.encode() + b"\n" + good: (400, "do not match its list of sizes"),  # cut short
        line.encode() + b"\n" + good + bytes(11): (400, "do not match its list of sizes"),
        b"no list here": (400, "starts with one line of JSON"),
        b"{not json\n" + good: (400, "is not JSON"),
        b"[]\n": (422, "no images"),
        b'[{"name": "a.jpg", "size": -1}]\n': (400, "name"),
        json.dumps([{"name": "a.jpg", "size": 0}] * 257).encode() + b"\n": (413, "at most 256"),
    }
    for body, (status, fragment) in cases.items():
        message = error_of(send(body), status)
        assert fragment in message and message.endswith("."), message
    assert api.get(f"/api/projects/{pid}/classes/cats/images").json()["total"] == 0
    kinds = [a["kind"] for a in api.get(f"/api/projects/{pid}/actions").json()["actions"]]
    assert "add" not in kinds, kinds


def test_an_upload_over_the_limit_is_413_declared_or_streamed(api):
    pid = new_project(api)
    big = b"\xff" * (9 * 1024 * 1024)
    message = error_of(upload(api, pid, "cats", [("big.jpg", big)]), 413)
    assert "8 MB" in message

    def chunks():
        for _ in range(10):
            yield b"\0" * (1024 * 1024)

    streamed = api.post(
        f"/api/projects/{pid}/classes/cats/images",
        content=chunks(),
        headers={"Content-Type": "image/jpeg"},
    )
    error_of(streamed, 413)
    assert api.get(f"/api/projects/{pid}/classes/cats/images").json()["total"] == 0


@pytest.mark.parametrize(
    "name",
    ["a/b", "..", ".", "../x", ".hidden", "a\\b", "tab\there", "x" * 81, "  ", "nul\0"],
)
def test_class_names_that_could_leave_the_folder_are_refused(api, name):
    pid = new_project(api, classes=())
    error_of(api.post(f"/api/projects/{pid}/classes", json={"name": name}), 400)
    assert not any(data_folder(api, pid).parent.parent.glob("x"))


def test_html_in_a_class_name_is_kept_verbatim(api):
    pid = new_project(api, classes=())
    name = "<img src=x onerror=alert(1)>"
    assert api.post(f"/api/projects/{pid}/classes", json={"name": name}).status_code == 201
    classes = [c["name"] for c in api.get(f"/api/projects/{pid}").json()["classes"]]
    assert classes == [name]
    assert upload(api, pid, name, [("a.jpg", jpeg())]).json()["added"]


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0
            z.writestr(info, "/etc/passwd")
    return out.getvalue()


def test_zip_slip_absolute_paths_and_symlinks_never_leave_the_project(api, tmp_path):
    pid = new_project(api)
    payload = _zip(
        {
            "cats/ok.jpg": jpeg(),
            "../escape.jpg": jpeg(),
            "/tmp/absolute.jpg": jpeg(),
            "dogs/../../up.jpg": jpeg(),
        },
        symlink="cats/link.jpg",
    )
    answer = api.post(
        f"/api/projects/{pid}/import/zip", files={"file": ("x.zip", payload, "application/zip")}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["added"] == 1
    assert len(body["rejected"]) == 4
    home = data_folder(api, pid).parent.parent
    assert not list(home.rglob("escape.jpg")) and not list(home.rglob("up.jpg"))
    assert not Path("/tmp/absolute.jpg").exists()
    assert not any(p.is_symlink() for p in home.rglob("*"))


def test_a_zip_bomb_is_refused_whole(api):
    pid = new_project(api)
    bomb = _zip({"cats/zeros.jpg": b"\0" * (60 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    answer = api.post(
        f"/api/projects/{pid}/import/zip", files={"file": ("bomb.zip", bomb, "application/zip")}
    )
    assert answer.status_code in (200, 400, 413), answer.text
    if answer.status_code == 200:  # refused entry by entry rather than whole
        assert answer.json()["added"] == 0 and answer.json()["rejected"]
    assert api.get(f"/api/projects/{pid}/classes/cats/images").json()["total"] == 0


def test_not_a_zip_and_not_a_project_zip(api):
    pid = new_project(api)
    not_zip = api.post(
        f"/api/projects/{pid}/import/zip", files={"file": ("x.zip", b"hello", "application/zip")}
    )
    error_of(not_zip, 400)
    plain = _zip({"cats/a.jpg": jpeg()})
    answer = api.post("/api/projects/import", files={"file": ("p.zip", plain, "x/y")})
    assert "not an imgrec studio project" in error_of(answer, 422)


def test_symlinks_in_an_imported_folder_are_skipped(api, tmp_path):
    pid = new_project(api)
    source = tmp_path / "photos"
    write_rgb(source / "cats" / "a.jpg")
    (source / "cats" / "secret.jpg").symlink_to(source / "cats" / "a.jpg")
    answer = api.post(f"/api/projects/{pid}/import/folder", json={"path": str(source)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == 1
    assert not any(p.is_symlink() for p in data_folder(api, pid).rglob("*"))


def test_unknown_things_are_404_with_a_sentence(api):
    error_of(api.get("/api/projects/nope"), 404)
    pid = new_project(api)
    error_of(api.get(f"/api/projects/{pid}/classes/nope/images"), 404)
    error_of(api.get(f"/api/projects/{pid}/images/cats/nope.jpg"), 404)
    error_of(api.get(f"/api/projects/{pid}/runs/nope"), 404)
    error_of(api.get(f"/api/projects/{pid}/images/cats/..%2F..%2Fproject.json"), 404)


def test_bad_json_and_unknown_job_kinds(api):
    pid = new_project(api)
    bad = api.post(
        f"/api/projects/{pid}/classes",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    error_of(bad, 422)
    error_of(api.post(f"/api/projects/{pid}/jobs", json={"kind": "dance"}), 422)
    error_of(api.post(f"/api/projects/{pid}/jobs", json={"kind": "train"}), 422)  # no images


def test_two_tabs_moving_the_same_images(api):
    """Two tabs move the same image at once: one wins, the other gets a 404/409 sentence."""
    pid = new_project(api)
    name = upload(api, pid, "cats", [("a.jpg", jpeg())]).json()["added"][0]["name"]
    body = {"images": [{"cls": "cats", "name": name}], "to": "dogs"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: api.post(f"/api/projects/{pid}/images/move", json=body), range(4))
        )
    assert sorted(a.status_code for a in answers)[0] == 200
    assert sum(a.status_code == 200 for a in answers) == 1
    for a in answers:
        if a.status_code != 200:
            error_of(a, a.status_code)
    dataset = load_dataset(data_folder(api, pid))
    assert [s.label for s in dataset.samples] == ["dogs"]


def test_every_change_can_be_undone(api):
    pid = new_project(api)
    name = upload(api, pid, "cats", [("a.jpg", jpeg())]).json()["added"][0]["name"]
    deleted = api.post(
        f"/api/projects/{pid}/images/delete", json={"images": [{"cls": "cats", "name": name}]}
    ).json()
    assert api.get(f"/api/projects/{pid}/classes/cats/images").json()["total"] == 0
    assert api.post(f"/api/projects/{pid}/actions/{deleted['id']}/undo").status_code == 200
    assert api.get(f"/api/projects/{pid}/classes/cats/images").json()["total"] == 1
    error_of(api.post(f"/api/projects/{pid}/actions/{deleted['id']}/undo"), 409)
    version = api.get(f"/api/projects/{pid}").json()["version"]
    assert version > 1


def test_deleting_a_project_goes_to_the_trash_and_comes_back(api):
    pid = new_project(api)
    trash_id = api.delete(f"/api/projects/{pid}").json()["trash_id"]
    assert api.get("/api/projects").json()["projects"] == []
    assert api.post(f"/api/trash/{trash_id}/restore").json()["id"] == pid


def test_the_page_and_its_files_are_served_from_the_package(api):
    page = api.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text.replace("http://127.0.0.1", "")
    assert "https://" not in page.text
    assert api.get("/docs").status_code == 404  # Swagger UI would load a CDN


def test_the_augmentation_preview_is_a_png_of_the_projects_photos(api):
    pid = new_project(api)
    for cls, colour in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
        upload(api, pid, cls, [(f"{i}.jpg", jpeg(colour, (80 + i, 60))) for i in range(3)])
    answer = api.get(f"/api/projects/{pid}/augment-preview?augment=strong&image_size=96")
    assert answer.status_code == 200, answer.text
    assert answer.content.startswith(b"\x89PNG")
    error_of(api.get(f"/api/projects/{pid}/augment-preview?augment=wild"), 422)
    error_of(api.get(f"/api/projects/{pid}/augment-preview?image_size=5"), 422)


def test_keeping_a_finding_can_be_undone(api):
    pid = new_project(api)
    name = upload(api, pid, "cats", [("a.jpg", jpeg())]).json()["added"][0]["name"]
    refs = {"images": [{"cls": "cats", "name": name}], "check": "duplicates"}
    action = api.post(f"/api/projects/{pid}/audit/keep", json=refs).json()
    assert action["undoable"] and "Kept 1 image" in action["summary"]
    assert api.post(f"/api/projects/{pid}/actions/{action['id']}/undo").status_code == 200
    home = Path(api.get("/api/info").json()["home"])
    kept = json.loads((home / pid / ".studio" / "kept.json").read_text())
    assert kept == {}
