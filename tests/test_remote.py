"""Datasets in object storage, against a real S3-API server (moto in a subprocess, s3server.py).

Each layout is listed remotely and compared with what the local loader makes of the same
folder, so the two cannot drift apart; each refusal is checked as one sentence.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from imagegen import make_class_folder, make_split_folders, write_csv, write_rgb
from s3server import S3Server, clean_environ, running_s3_server
from servehelpers import free_port

from imgrec.data import remote
from imgrec.data.dataset import load_dataset
from imgrec.data.decode import UnreadableImage
from imgrec.data.remote import is_url, list_remote, read_bytes, url_text
from imgrec.errors import ImgrecError


def refusal(url: str, *fragments: str) -> str:
    """list_remote(url) refuses with one sentence holding every fragment."""
    with pytest.raises(ImgrecError) as caught:
        list_remote(url)
    message = str(caught.value)
    assert type(caught.value) is ImgrecError, repr(caught.value)
    assert "\n" not in message and message.endswith("."), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def local_view(root: Path) -> tuple[set, set]:
    """(relative path, label, split) of the local loader's samples, and its skipped files."""
    ds = load_dataset(root)
    samples = {(ds.relative(s.path), s.label, s.split) for s in ds.samples}
    return samples, {(ds.relative(s.path), s.reason) for s in ds.skipped}


def remote_view(url: str) -> tuple[set, set]:
    listing = list_remote(url)
    samples = {(i.path, i.label, i.split) for i in listing.inputs}
    prefix = f"{listing.root}/"
    return samples, {(u.removeprefix(prefix), reason) for u, reason in listing.skipped}


# ---- URLs --------------------------------------------------------------------------------
def test_is_url_tells_urls_from_local_paths():
    for url in ("s3://bucket/photos/", "gs://b/x.csv", "memory://x", Path("s3://bucket/p")):
        assert is_url(url), url
    for path in ("photos/cats", "/data/photos", "C:/photos", "C:\\photos", Path("data"), ""):
        assert not is_url(path), path
    assert url_text(Path("s3://bucket/photos")) == "s3://bucket/photos"
    assert url_text("s3://bucket/photos/") == "s3://bucket/photos/"


# ---- layouts: the local loader's rules ----------------------------------------------------
def test_class_folders_list_as_the_local_loader_lists_them(s3_env: S3Server, tmp_path):
    root = make_class_folder(tmp_path / "photos", {"cats": 3, "dogs": 2})
    (root / ".DS_Store").write_bytes(b"x")
    write_rgb(root / "cats" / ".thumbs" / "t.png")  # hidden folder: ignored
    write_rgb(root / "dogs" / ".hidden.png")  # hidden file: ignored
    write_rgb(root / "loose.png")  # not inside a class folder: skipped
    write_rgb(root / "dogs" / "album.jpg" / "inner.png")  # folder named like an image: skipped
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / "cats" / "empty.png").write_bytes(b"")  # zero bytes: skipped
    url = s3_env.upload_tree(root, "folders", "photos")

    listing = list_remote(url + "/")
    assert listing.root == "s3://folders/photos"
    assert listing.classes == ["cats", "dogs"]
    assert [i.path for i in listing.inputs] == [
        "cats/cats_000.png",
        "cats/cats_001.png",
        "cats/cats_002.png",
        "dogs/dogs_000.png",
        "dogs/dogs_001.png",
    ]
    assert listing.inputs[0].source == "s3://folders/photos/cats/cats_000.png"
    assert {i.split for i in listing.inputs} == {None}
    assert remote_view(url) == local_view(root)
    assert ("s3://folders/photos/loose.png", "not inside a class folder") in listing.skipped


def test_split_folders_map_their_aliases(s3_env: S3Server, tmp_path):
    counts = {"ants": 3, "bees": 2}
    root = make_split_folders(
        tmp_path / "hym", {"train": counts, "validation": counts, "Test": counts}
    )
    url = s3_env.upload_tree(root, "splits")  # the bucket root itself
    listing = list_remote(url)
    assert {i.split for i in listing.inputs} == {"train", "val", "test"}
    assert listing.inputs[0].path == "Test/ants/ants_000.png"
    assert remote_view(url) == local_view(root)


def test_split_folders_mixed_with_class_folders_are_refused(s3_env: S3Server, tmp_path):
    root = make_split_folders(tmp_path / "mixed", {"train": {"a": 1, "b": 1}})
    make_class_folder(root, {"stray": 1})
    url = s3_env.upload_tree(root, "mixed")
    refusal(url, "mixes split folders (train) with other folders (stray)")


def test_csv_paths_relative_to_its_folder_or_full_urls(s3_env: S3Server, tmp_path):
    make_class_folder(tmp_path / "set" / "imgs", {"a": 2, "b": 2})
    make_class_folder(tmp_path / "elsewhere", {"c": 1})
    s3_env.upload_tree(tmp_path / "set", "csvdata", "set")
    s3_env.upload_tree(tmp_path / "elsewhere", "csvdata", "elsewhere")
    rows = [
        ("imgs/a/a_000.png", "a", "train"),
        ("./imgs/a/a_001.png", "a", "validation"),
        ("imgs/b/b_000.png", "b", ""),
        ("imgs\\b\\b_001.png", "b", "test"),
        ("s3://csvdata/elsewhere/c/c_000.png", "c", "train"),
        ("imgs/a/a_000.png", "a", "train"),  # listed again
        ("imgs/a/missing.png", "a", "train"),
        ("imgs/b/b_000.png", "", ""),  # listed again (and no label)
        ("../../outside.png", "a", ""),
        ("/home/me/photo.png", "a", ""),
    ]
    write_csv(tmp_path / "labels.csv", rows, header=("path", "label", "split"))
    s3_env.put("s3://csvdata/set/labels.csv", (tmp_path / "labels.csv").read_bytes())

    listing = list_remote("s3://csvdata/set/labels.csv")
    assert listing.root == "s3://csvdata/set"
    assert listing.classes == ["a", "b", "c"]
    got = [(i.source, i.path, i.label, i.split) for i in listing.inputs]
    assert got == [
        ("s3://csvdata/set/imgs/a/a_000.png", "imgs/a/a_000.png", "a", "train"),
        ("s3://csvdata/set/imgs/a/a_001.png", "imgs/a/a_001.png", "a", "val"),
        ("s3://csvdata/set/imgs/b/b_000.png", "imgs/b/b_000.png", "b", None),
        ("s3://csvdata/set/imgs/b/b_001.png", "imgs/b/b_001.png", "b", "test"),
        ("s3://csvdata/elsewhere/c/c_000.png", "s3://csvdata/elsewhere/c/c_000.png", "c", "train"),
    ]
    assert listing.skipped == sorted(
        [
            ("s3://csvdata/set/imgs/a/a_000.png", "listed again on row 7 of the CSV"),
            ("s3://csvdata/set/imgs/a/missing.png", "file not found"),
            ("s3://csvdata/set/imgs/b/b_000.png", "listed again on row 9 of the CSV"),
            ("../../outside.png", "outside the bucket the CSV is in"),
            (
                "/home/me/photo.png",
                "a local path; give a path relative to the CSV or a full URL",
            ),
        ]
    )


def test_csv_without_path_and_label_columns_is_refused(s3_env: S3Server, tmp_path):
    write_csv(tmp_path / "bad.csv", [("x.png", "a")], header=("file", "class"))
    s3_env.put("s3://csvbad/bad.csv", (tmp_path / "bad.csv").read_bytes())
    refusal("s3://csvbad/bad.csv", "needs a header with columns path,label", "found file,class")


# ---- reading -----------------------------------------------------------------------------
def test_read_bytes_round_trip_and_per_object_reasons(s3_env: S3Server, tmp_path, monkeypatch):
    local = write_rgb(tmp_path / "x.jpg")
    s3_env.put("s3://reads/x.jpg", local.read_bytes())
    s3_env.put("s3://reads/empty.jpg", b"")
    assert read_bytes("s3://reads/x.jpg") == local.read_bytes()
    for url, reason in (
        ("s3://reads/nothing.jpg", "file not found"),
        ("s3://reads/empty.jpg", "zero bytes"),
    ):
        with pytest.raises(UnreadableImage, match=reason):
            read_bytes(url)
    monkeypatch.setattr(remote, "MAX_OBJECT_BYTES", 100)
    with pytest.raises(UnreadableImage, match="over the limit of 0 MB per image"):
        read_bytes("s3://reads/x.jpg")


def _read_in_child(url: str) -> tuple[int, bytes]:
    return os.getpid(), read_bytes(url)


def test_read_bytes_works_in_spawned_processes(s3_env: S3Server, tmp_path):
    """The shard writer calls it in worker processes: it must pickle by name and build its
    own client there."""
    root = make_class_folder(tmp_path / "p", {"a": 2, "b": 2})
    url = s3_env.upload_tree(root, "spawned")
    urls = [i.source for i in list_remote(url).inputs]
    assert pickle.loads(pickle.dumps(read_bytes)) is read_bytes
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_read_in_child, urls)
    assert {pid for pid, _ in results} - {os.getpid()}
    assert [data for _, data in results] == [(root / u.split("/", 3)[3]).read_bytes() for u in urls]


def test_write_shards_from_a_bucket(s3_env: S3Server, tmp_path):
    from imgrec.data.shards import write_shards

    root = make_class_folder(tmp_path / "p", {"cats": 3, "dogs": 3}, size=(64, 48))
    (root / "dogs" / "broken.png").write_bytes(b"not a png")
    url = s3_env.upload_tree(root, "shards")
    listing = list_remote(url)
    manifest = write_shards(
        listing.inputs, tmp_path / "out", 32, read=read_bytes, workers=2, images_per_shard=4
    )
    assert manifest.images == 6
    assert manifest.index["classes"] == ["cats", "dogs"]
    assert [(str(s.path), s.reason) for s in manifest.skipped] == [
        ("dogs/broken.png", "not an image")
    ]


# ---- refusals, one sentence each ----------------------------------------------------------
def test_missing_bucket(s3_env: S3Server):
    refusal("s3://no-such-bucket/photos/", "The bucket 'no-such-bucket' does not exist")


def test_prefix_without_images(s3_env: S3Server, tmp_path):
    s3_env.put("s3://sparse/photos/readme.txt", b"nothing to see")
    refusal("s3://sparse/photos/", "No images found in s3://sparse/photos;")
    refusal("s3://sparse/nothing-here", "No images found in s3://sparse/nothing-here;")
    refusal("s3://sparse/labels.csv", "s3://sparse/labels.csv does not exist.")


def test_images_without_class_folders(s3_env: S3Server, tmp_path):
    write_rgb(tmp_path / "flat" / "1.png")
    write_rgb(tmp_path / "flat" / "2.png")
    url = s3_env.upload_tree(tmp_path / "flat", "flat")
    refusal(url, "Found 2 images directly in s3://flat but no class folders")


def test_one_class_only(s3_env: S3Server, tmp_path):
    url = s3_env.upload_tree(make_class_folder(tmp_path / "one", {"cats": 2}), "oneclass")
    refusal(url, "Found only one class 'cats' in s3://oneclass; a classifier needs at least two.")


def test_no_credentials(s3_env: S3Server, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    refusal("s3://folders/photos", "No credentials were found for s3://folders/photos;")


def test_unreachable_endpoint_fails_fast(s3_env: S3Server, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    started = time.monotonic()
    refusal("s3://folders/photos", f"Cannot reach the storage service at {dead}")
    assert time.monotonic() - started < 10


def test_unknown_scheme_and_missing_backend():
    refusal("foo://bucket/photos", "imgrec cannot read foo:// URLs")
    refusal("gs://bucket/photos", "pip install gcsfs")


def test_s3_without_s3fs_says_which_extra_to_install():
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from imgrec.data.remote import list_remote\n"
        "from imgrec.errors import ImgrecError\n"
        "try:\n    list_remote('s3://bucket/photos')\n"
        "except ImgrecError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'imgrec[s3]'" in result.stdout, result.stdout + result.stderr


# ---- credentials a server checks (a second server, with IAM auth switched on) -------------
@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A server that checks signatures and policies, with buckets `open` and `closed` (two
    classes each) and a user who may use `open` only."""
    folder = tmp_path_factory.mktemp("s3auth")
    data = make_class_folder(folder / "data", {"a": 1, "b": 1})
    with running_s3_server(folder / "server") as server:
        server.upload_tree(data, "open")
        server.upload_tree(data, "closed")
        key, secret = server.create_user("reader", ["open"])
        server.require_auth()
        yield server, key, secret


def _use(monkeypatch, server: S3Server, key: str, secret: str) -> None:
    env = clean_environ({**server.env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


def test_access_denied_wrong_secret_and_unknown_key(auth_server, monkeypatch):
    server, key, secret = auth_server
    _use(monkeypatch, server, key, secret)
    assert [i.path for i in list_remote("s3://open").inputs] == ["a/a_000.png", "b/b_000.png"]
    refusal("s3://closed", "Access to s3://closed is denied for these credentials")
    with pytest.raises(ImgrecError, match="is denied") as caught:
        read_bytes("s3://closed/a/a_000.png")  # stops the shard writer: not a skipped image
    assert not isinstance(caught.value, UnreadableImage)
    _use(monkeypatch, server, key, "not-the-secret")
    refusal("s3://open", "The secret key does not match the access key", "AWS_SECRET_ACCESS_KEY")
    _use(monkeypatch, server, "AKIANOSUCHKEY0000000", secret)
    refusal("s3://open", "does not know the access key in AWS_ACCESS_KEY_ID")
