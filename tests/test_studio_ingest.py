"""Adding images to a studio project: uploads, zips (hostile ones included), folders, CSVs."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from imgrec.data.dataset import load_dataset
from imgrec.studio import ingest
from imgrec.studio.errors import StudioError
from imgrec.studio.projects import Studio
from tests.imagegen import png_bomb_bytes, write_kind

XSS = "<img src=x onerror=alert(1)>"


def jpeg(colour=(200, 30, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def png(colour=(30, 30, 200), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def truncated_jpeg(tmp_path: Path) -> bytes:
    return write_kind(tmp_path / "kinds", "truncated_jpeg").read_bytes()


@pytest.fixture
def project(tmp_path):
    p = Studio(tmp_path / "home").create_project("Pets")
    p.add_class("cats")
    return p


def files_of(project) -> dict[str, list[str]]:
    return {cls: project.image_names(cls) for cls in sorted(project.class_names())}


def reasons(answer) -> dict[str, str]:
    return {r["filename"]: r["error"] for r in answer["rejected"]}


def make_zip(path: Path, entries: dict[str, bytes], **kw) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **kw) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def status_of(call, *args) -> tuple[int, str]:
    with pytest.raises(StudioError) as info:
        call(*args)
    return info.value.status, info.value.message


# -- uploads --------------------------------------------------------------------------------------


def test_upload_keeps_the_original_bytes(project):
    data = jpeg()
    answer = project.add_images("cats", [("photo.jpg", data)])
    assert [i["name"] for i in answer["added"]] == ["photo.jpg"]
    assert answer["added"][0]["bytes"] == len(data) and answer["rejected"] == []
    assert (project.data / "cats" / "photo.jpg").read_bytes() == data


def test_the_extension_follows_the_real_format(project):
    answer = project.add_images(
        "cats",
        [
            ("looks.jpg", png()),
            ("UPPER.JPEG", jpeg()),
            ("scan.TIFF", _tiff()),
            ("noext", jpeg()),
            ("notes.v2", png()),
        ],
    )
    assert [i["name"] for i in answer["added"]] == [
        "looks.png",
        "UPPER.jpeg",
        "scan.tiff",
        "noext.jpg",
        "notes.v2.png",
    ]


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\Pictures\\IMG_1.JPG", "IMG_1.jpg"),
        (".hidden.jpg", "hidden.jpg"),
        ("..jpg", "image.jpg"),
        ("bell\x07\x1b[31m.jpg", "bell[31m.jpg"),
        ("/", "image.jpg"),
        (XSS + ".jpg", XSS + ".jpg"),
        ("x" * 300 + ".jpg", "x" * 116 + ".jpg"),
    ],
)
def test_uploaded_file_names_are_sanitised(project, sent, stored):
    answer = project.add_images("cats", [(sent, jpeg())])
    assert [i["name"] for i in answer["added"]] == [stored]
    assert (project.data / "cats" / stored).is_file()


def test_duplicate_names_get_numbers_before_the_extension(project):
    answer = project.add_images("cats", [("a.jpg", jpeg()), ("a.jpg", jpeg()), ("A.jpg", jpeg())])
    project.add_images("cats", [("a.jpg", jpeg())])
    assert [i["name"] for i in answer["added"]] == ["a.jpg", "a-2.jpg", "A.jpg"]
    assert files_of(project)["cats"] == ["a-2.jpg", "a-3.jpg", "A.jpg", "a.jpg"]


def test_bad_uploads_are_rejected_with_the_decoders_reason(project, tmp_path):
    answer = project.add_images(
        "cats",
        [
            ("cut.jpg", truncated_jpeg(tmp_path)),
            ("list.jpg", b"milk, eggs, bread\n"),
            ("bomb.png", png_bomb_bytes()),
            ("empty.jpg", b""),
            ("ok.jpg", jpeg()),
        ],
    )
    assert reasons(answer) == {
        "cut.jpg": "truncated image",
        "list.jpg": "not an image",
        "bomb.png": "decompression bomb: 400000000 pixels",
        "empty.jpg": "zero bytes",
    }
    assert files_of(project)["cats"] == ["ok.jpg"]
    assert list(project.incoming.iterdir()) == []


def test_uploads_over_the_size_limit_are_rejected(project, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 1000)
    answer = project.add_images("cats", [("big.png", png(size=(400, 400)))])
    assert answer["added"] == [] and "over the limit" in answer["rejected"][0]["error"]


def test_uploads_are_named_in_data_only_once_complete(project, monkeypatch):
    """O_TMPFILE: the file has every byte before linkat gives it a name in data/<class>/."""
    if not ingest._TMPFILE_OK[0]:
        pytest.skip("this system has no O_TMPFILE: uploads take the incoming/ road")
    seen = []
    real = os.link

    def spy(src, dst, *, dst_dir_fd, **kwargs):
        size = os.fstat(int(str(src).rsplit("/", 1)[1])).st_size
        folder = Path(os.readlink(f"/proc/self/fd/{dst_dir_fd}"))
        seen.append((size, folder, dst, sorted(os.listdir(folder))))
        return real(src, dst, dst_dir_fd=dst_dir_fd, **kwargs)

    monkeypatch.setattr(ingest.os, "link", spy)
    payload = jpeg()
    answer = project.add_images("cats", [("a.jpg", payload), ("a.jpg", payload)])
    cats = project.data / "cats"
    assert seen == [
        (len(payload), cats, "a.jpg", []),
        (len(payload), cats, "a.jpg", ["a.jpg"]),  # taken: linkat refused it
        (len(payload), cats, "a-2.jpg", ["a.jpg"]),
    ]
    assert [image["name"] for image in answer["added"]] == ["a.jpg", "a-2.jpg"]
    assert list(project.incoming.iterdir()) == []


def test_a_class_deleted_by_another_tab_mid_batch_stops_the_rest_of_it(project, monkeypatch):
    """The batch writes into the class folder it opened; once another tab has deleted the
    class, the remaining photos are refused with a sentence, not written into the trash."""
    if not ingest._TMPFILE_OK[0]:
        pytest.skip("this system has no O_TMPFILE: uploads take the incoming/ road")
    real = ingest._link_free_name

    def then_delete(fd, folder_fd, name):
        named = real(fd, folder_fd, name)
        if name == "a.jpg":
            project.delete_class("cats")
        return named

    monkeypatch.setattr(ingest, "_link_free_name", then_delete)
    answer = project.add_images("cats", [(f"{n}.jpg", jpeg()) for n in "abc"])
    assert [image["name"] for image in answer["added"]] == ["a.jpg"]
    assert set(reasons(answer)) == {"b.jpg", "c.jpg"}
    assert "no longer exists (another tab may have deleted it)" in reasons(answer)["b.jpg"]
    delete = project.actions()[1]  # [0] is the upload, recorded when its batch ended
    project.undo(delete["id"])  # the delete's undo brings back what it took
    assert files_of(project)["cats"] == ["a.jpg"]


def test_a_project_trashed_mid_batch_answers_404(project, monkeypatch):
    if not ingest._TMPFILE_OK[0]:
        pytest.skip("this system has no O_TMPFILE: uploads take the incoming/ road")
    real = ingest._link_free_name

    def then_trash(fd, folder_fd, name):
        named = real(fd, folder_fd, name)
        project.studio.trash_project(project.id)  # another tab deletes the project
        return named

    monkeypatch.setattr(ingest, "_link_free_name", then_trash)
    with pytest.raises(StudioError) as caught:
        project.add_images("cats", [("a.jpg", jpeg()), ("b.jpg", jpeg())])
    assert caught.value.status == 404


def test_without_o_tmpfile_uploads_go_through_incoming_and_os_replace(project, monkeypatch):
    monkeypatch.setattr(ingest, "_TMPFILE_OK", [False])
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((Path(src).parent, Path(dst).parent))
        return real(src, dst)

    monkeypatch.setattr(ingest.os, "replace", spy)
    project.add_images("cats", [("a.jpg", jpeg())])
    into_data = [(src, dst) for src, dst in seen if dst.is_relative_to(project.data)]
    assert into_data == [(project.incoming, project.data / "cats")]
    assert files_of(project)["cats"] == ["a.jpg"]


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "incoming"])
def test_a_server_killed_mid_upload_leaves_nothing_in_data(project, monkeypatch, tmpfile):
    class Killed(BaseException):
        pass

    def die(*args, **kwargs):
        raise Killed

    if not tmpfile:  # killed with the file staged in incoming/, before its rename
        monkeypatch.setattr(ingest, "_TMPFILE_OK", [False])
        monkeypatch.setattr(ingest.Ingest, "_named_place", die)
    elif not ingest._TMPFILE_OK[0]:
        pytest.skip("this system has no O_TMPFILE")
    else:  # killed with every byte written, before the file has a name
        monkeypatch.setattr(ingest, "_link_free_name", die)
    with pytest.raises(Killed):
        project.add_images("cats", [("a.jpg", jpeg())])
    assert files_of(project)["cats"] == []
    # A real kill leaves the .part file behind (no finally runs): the next start removes it.
    (project.incoming / "upload-abc.part").write_bytes(jpeg()[:50])
    Studio(project.folder.parent)
    assert list(project.incoming.iterdir()) == []


# -- zip import -----------------------------------------------------------------------------------


def test_zip_of_class_folders_under_one_top_folder(project, tmp_path):
    zip_path = make_zip(
        tmp_path / "pets.zip",
        {
            "pets/cats/1.jpg": jpeg(),
            "pets/dogs/2.jpg": jpeg(),
            "pets/dogs/deeper/3.jpg": jpeg(),
            f"pets/{XSS}/4.png": png(),
            "__MACOSX/pets/cats/._1.jpg": b"resource fork",
            "pets/.DS_Store": b"junk",
        },
    )
    answer = project.import_zip(zip_path)
    assert answer == {"added": 4, "rejected": [], "classes": [XSS, "cats", "dogs"]}
    assert files_of(project) == {XSS: ["4.png"], "cats": ["1.jpg"], "dogs": ["2.jpg", "3.jpg"]}
    assert project.actions()[0]["kind"] == "import"


def test_an_imported_folder_joins_the_class_of_the_same_name_in_any_case(project, tmp_path):
    zip_path = make_zip(tmp_path / "c.zip", {"CATS/1.jpg": jpeg(), "Dogs/2.jpg": jpeg()})
    assert project.import_zip(zip_path)["classes"] == ["cats", "Dogs"]
    assert files_of(project) == {"Dogs": ["2.jpg"], "cats": ["1.jpg"]}


def test_zip_with_split_folders_and_loose_images(project, tmp_path):
    zip_path = make_zip(
        tmp_path / "d.zip",
        {
            "train/cats/1.jpg": jpeg(),
            "val/cats/1.jpg": jpeg(),
            "test/dogs/2.jpg": jpeg(),
            "loose.jpg": jpeg(),
        },
    )
    answer = project.import_zip(zip_path)
    assert answer["added"] == 3 and answer["classes"] == ["cats", "dogs"]
    assert "not inside a class folder" in reasons(answer)["loose.jpg"]
    assert files_of(project) == {"cats": ["1-2.jpg", "1.jpg"], "dogs": ["2.jpg"]}


def test_zip_of_loose_images_into_a_class(project, tmp_path):
    zip_path = make_zip(tmp_path / "l.zip", {"1.jpg": jpeg(), "sub/2.jpg": jpeg()})
    answer = project.import_zip(zip_path, "cats")
    assert answer["added"] == 2 and answer["classes"] == ["cats"]
    assert files_of(project) == {"cats": ["1.jpg", "2.jpg"]}
    assert status_of(project.import_zip, zip_path, "nope")[0] == 404


def test_hostile_zip_entries_are_rejected_one_by_one(project, tmp_path):
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("../x.jpg", jpeg())
        zf.writestr("/etc/x.jpg", jpeg())
        zf.writestr("cats/../../y.jpg", jpeg())
        zf.writestr("C:/Windows/z.jpg", jpeg())
        link = zipfile.ZipInfo("cats/link.jpg")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("empty-folder/", b"")
        zf.writestr("cats/bad.jpg", b"not an image")
        zf.writestr("a\x07b/1.jpg", jpeg())
        zf.writestr("x" * 81 + "/1.jpg", jpeg())
        zf.writestr("cats/ok.jpg", jpeg())
    answer = project.import_zip(zip_path)
    found = reasons(answer)
    assert "outside the project" in found["../x.jpg"]
    assert "absolute path" in found["/etc/x.jpg"]
    assert "'..'" in found["cats/../../y.jpg"]
    assert "absolute path" in found["C:/Windows/z.jpg"]
    assert "symbolic link" in found["cats/link.jpg"]
    assert "no files" in found["empty-folder/"]
    assert found["cats/bad.jpg"] == "not an image"
    assert "U+0007" in found["a\\x07b/1.jpg"]
    assert "81 characters" in found["x" * 81 + "/1.jpg"]
    assert answer["added"] == 1 and files_of(project) == {"cats": ["ok.jpg"]}
    outside = [p for p in tmp_path.rglob("*") if p.name in ("x.jpg", "y.jpg", "z.jpg")]
    assert outside == []
    assert not any(p.is_symlink() for p in project.folder.rglob("*"))


def test_a_zip_bomb_is_refused_whole(project, tmp_path):
    zip_path = make_zip(
        tmp_path / "bomb.zip", {"cats/a.jpg": jpeg(), "cats/zeros.bmp": b"\0" * 20_000_000}
    )
    status, message = status_of(project.import_zip, zip_path)
    assert status == 400 and "zip bomb" in message and "cats/zeros.bmp" in message
    assert files_of(project) == {"cats": []}


def test_a_small_flat_image_is_no_bomb(project, tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (255, 255, 255)).save(buf, "BMP")  # compresses ~1000:1
    zip_path = make_zip(tmp_path / "flat.zip", {"cats/flat.bmp": buf.getvalue()})
    info = zipfile.ZipFile(zip_path).infolist()[0]
    assert info.file_size > 200 * info.compress_size
    assert project.import_zip(zip_path)["added"] == 1


def test_too_many_entries_or_bytes_refuse_the_whole_zip(project, tmp_path, monkeypatch):
    zip_path = make_zip(tmp_path / "many.zip", {f"cats/{i}.jpg": jpeg() for i in range(5)})
    monkeypatch.setattr(ingest, "MAX_ZIP_ENTRIES", 4)
    status, message = status_of(project.import_zip, zip_path)
    assert status == 400 and "5 entries" in message
    monkeypatch.setattr(ingest, "MAX_ZIP_ENTRIES", 50_000)
    monkeypatch.setattr(ingest, "MAX_ZIP_BYTES", 1000)
    assert "would unpack to" in status_of(project.import_zip, zip_path)[1]
    assert files_of(project) == {"cats": []}


def _zip_declaring(tmp_path: Path, data: bytes, declared: int) -> Path:
    """A zip of one image whose headers declare `declared` bytes, whatever it holds."""
    zip_path = make_zip(tmp_path / "lie.zip", {"cats/a.png": data})
    raw = bytearray(zip_path.read_bytes())
    lie = declared.to_bytes(4, "little")
    local = raw.find(b"PK\x03\x04")
    central = raw.find(b"PK\x01\x02")
    raw[local + 22 : local + 26] = lie  # uncompressed size in the local header
    raw[central + 24 : central + 28] = lie  # and in the central directory
    zip_path.write_bytes(bytes(raw))
    return zip_path


def test_sizes_are_enforced_while_reading_not_taken_from_headers(project, tmp_path):
    data = png(size=(200, 200))
    answer = project.import_zip(_zip_declaring(tmp_path, data, 100))  # claims less than it holds
    assert answer["added"] == 0
    assert "damaged inside the zip" in reasons(answer)["cats/a.png"]
    assert list(project.incoming.iterdir()) == []
    (tmp_path / "lie.zip").unlink()
    answer = project.import_zip(_zip_declaring(tmp_path, data, 500_000))  # claims more
    assert answer["added"] == 1  # what is really there is read, and it is the image
    assert (project.data / "cats" / "a.png").read_bytes() == data


def test_a_source_that_holds_more_than_it_declared_is_refused(tmp_path):
    out = io.BytesIO()
    with pytest.raises(ingest.Rejected, match="more data than its size says"):
        ingest.copy_limited(io.BytesIO(b"x" * 5000), out, declared=100)
    assert len(out.getvalue()) <= 100 + ingest.CHUNK


def test_an_entry_over_the_size_limit_is_rejected(project, tmp_path, monkeypatch):
    zip_path = make_zip(tmp_path / "big.zip", {"cats/a.png": png(size=(300, 300))})
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 100)
    answer = project.import_zip(zip_path)
    assert "over the limit" in reasons(answer)["cats/a.png"]


def test_not_a_zip_is_one_sentence(project, tmp_path):
    (tmp_path / "x.zip").write_bytes(b"PK but not really")
    status, message = status_of(project.import_zip, tmp_path / "x.zip")
    assert status == 400 and message.endswith(".")


def test_a_project_zip_imported_into_a_project_goes_by_labels(project, tmp_path):
    labels = "path,label\ndata/old/1.jpg,birds\ndata/old/2.jpg,cats\ndata/old/missing.jpg,cats\n"
    zip_path = make_zip(
        tmp_path / "p.zip",
        {
            "data/old/1.jpg": jpeg(),
            "data/old/2.jpg": jpeg(),
            "data/old/3.jpg": jpeg(),  # not listed: not imported
            "labels.csv": labels.encode(),
            "project.json": b'{"name": "Other"}',
        },
    )
    answer = project.import_zip(zip_path)
    assert answer["added"] == 2 and answer["classes"] == ["birds", "cats"]
    assert "not in the zip" in reasons(answer)["data/old/missing.jpg"]
    assert files_of(project) == {"birds": ["1.jpg"], "cats": ["2.jpg"]}


def test_undo_of_a_zip_import_removes_its_images_and_new_classes(project, tmp_path):
    zip_path = make_zip(tmp_path / "z.zip", {"cats/1.jpg": jpeg(), "dogs/2.jpg": jpeg()})
    project.import_zip(zip_path)
    action = project.actions()[0]
    assert action["summary"] == "Imported 2 images from z.zip into cats, dogs"
    project.undo(action["id"])
    assert files_of(project) == {"cats": []}  # cats existed before, dogs did not


# -- folder import --------------------------------------------------------------------------------


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_folder_import_copies_class_folders_and_reports_the_rest(project, tmp_path):
    src = tmp_path / "photos"
    (src / "cats").mkdir(parents=True)
    (src / "dogs" / "puppies").mkdir(parents=True)
    (src / "cats" / "1.jpg").write_bytes(jpeg())
    (src / "cats" / "notes.txt").write_text("hello")
    (src / "cats" / ".DS_Store").write_bytes(b"junk")
    (src / "dogs" / "puppies" / "2.png").write_bytes(png())
    (src / "loose.jpg").write_bytes(jpeg())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(jpeg())
    os.symlink(outside / "secret.jpg", src / "cats" / "link.jpg")
    os.symlink(outside, src / "linked")
    before = _tree_digest(src)
    answer = project.import_folder(src)
    assert answer["added"] == 2 and answer["classes"] == ["cats", "dogs"]
    assert reasons(answer) == {
        "cats/notes.txt": "not an image",
        "cats/link.jpg": "a symbolic link (not followed)",
        "linked": "a symbolic link (not followed)",
        "loose.jpg": ingest._NOT_IN_CLASS,
    }
    assert files_of(project) == {"cats": ["1.jpg"], "dogs": ["2.png"]}
    assert _tree_digest(src) == before  # the original folder is untouched
    assert load_dataset(project.data).class_counts() == {"cats": 1, "dogs": 1}


def test_folder_import_reads_split_folders(project, tmp_path):
    src = tmp_path / "d"
    for split, cls in [("train", "cats"), ("validation", "dogs"), ("test", "dogs")]:
        (src / split / cls).mkdir(parents=True)
        (src / split / cls / f"{split}.jpg").write_bytes(jpeg())
    answer = project.import_folder(src)
    assert answer["classes"] == ["cats", "dogs"]
    assert files_of(project) == {"cats": ["train.jpg"], "dogs": ["test.jpg", "validation.jpg"]}


def test_folder_import_refuses_missing_and_own_folders(project, tmp_path):
    assert status_of(project.import_folder, tmp_path / "nope")[0] == 400
    assert "own folder" in status_of(project.import_folder, project.data)[1]
    assert "own folder" in status_of(project.import_folder, project.folder.parent)[1]


# -- CSV import -----------------------------------------------------------------------------------


def test_csv_import_resolves_paths_against_the_csv_folder(project, tmp_path):
    src = tmp_path / "set"
    (src / "img").mkdir(parents=True)
    (src / "img" / "1.jpg").write_bytes(jpeg())
    (src / "img" / "2.jpg").write_bytes(png())
    absolute = tmp_path / "abs.jpg"
    absolute.write_bytes(jpeg())
    os.symlink(src / "img" / "1.jpg", src / "img" / "link.jpg")
    rows = [
        "path,label",
        "img/1.jpg,cats",
        f"{absolute},dogs",
        "img/2.jpg,a/b",
        "img/1.jpg,cats",
        "img/missing.jpg,cats",
        "img/link.jpg,cats",
        "img/2.jpg,",
        ",",
        f"img/2.jpg,{XSS}",
    ]
    (src / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    answer = project.import_csv(src / "labels.csv")
    assert answer["added"] == 3 and answer["classes"] == [XSS, "cats", "dogs"]
    found = reasons(answer)
    assert "slash" in found["img/2.jpg"] or "no label" in found["img/2.jpg"]
    assert len([r for r in answer["rejected"] if r["filename"] == "img/2.jpg"]) == 2
    assert "listed again on row 5" in found["img/1.jpg"]
    assert found["img/missing.jpg"] == "file not found"
    assert found["img/link.jpg"] == "a symbolic link (not followed)"
    assert files_of(project) == {XSS: ["2.png"], "cats": ["1.jpg"], "dogs": ["abs.jpg"]}


def test_csv_import_needs_path_and_label_columns(project, tmp_path):
    (tmp_path / "bad.csv").write_text("file,class\nx.jpg,cats\n", encoding="utf-8")
    status, message = status_of(project.import_csv, tmp_path / "bad.csv")
    assert status == 400 and "path,label" in message
    assert status_of(project.import_csv, tmp_path / "none.csv")[0] == 400


# -- the layout rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "strip", "expected"),
    [
        ([("cats", "1.jpg"), ("dogs", "2.jpg")], True, ["cats", "dogs"]),
        ([("pets", "cats", "1.jpg"), ("pets", "dogs", "2.jpg")], True, ["cats", "dogs"]),
        ([("cats", "1.jpg"), ("cats", "2.jpg")], True, ["cats", "cats"]),
        ([("pets", "cats", "1.jpg")], False, ["pets"]),
        ([("1.jpg",), ("cats", "2.jpg")], True, [None, "cats"]),
        ([("train", "a", "1.jpg"), ("val", "b", "2.jpg")], True, ["a", "b"]),
        ([("train", "1.jpg"), ("train", "2.jpg")], True, ["train", "train"]),
    ],
)
def test_classes_for(paths, strip, expected):
    assert ingest.classes_for(paths, strip_top=strip) == expected
