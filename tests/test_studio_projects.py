"""The studio's project store: folder layout, names, classes, images, undo, trash, thumbnails,
the project zip, and two tabs editing one project at once."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image, JpegImagePlugin

from imgrec.data.dataset import load_dataset
from imgrec.studio import journal as journal_mod
from imgrec.studio import thumbs as thumbs_mod
from imgrec.studio.errors import StudioError
from imgrec.studio.projects import Studio, image_url, thumb_url

XSS = "<img src=x onerror=alert(1)>"


def jpeg(colour=(200, 30, 30), size=(40, 30), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", **save)
    return buf.getvalue()


def png(colour=(30, 30, 200), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def studio(tmp_path):
    return Studio(tmp_path / "home")


@pytest.fixture
def pets(studio):
    """A project with cats (a.jpg, b.jpg) and dogs (c.jpg)."""
    project = studio.create_project("Pets")
    project.add_class("cats")
    project.add_class("dogs")
    project.add_images("cats", [("a.jpg", jpeg()), ("b.jpg", jpeg((10, 200, 10)))])
    project.add_images("dogs", [("c.jpg", jpeg((10, 10, 200)))])
    return project


def status_of(call, *args) -> tuple[int, str]:
    with pytest.raises(StudioError) as info:
        call(*args)
    return info.value.status, info.value.message


def files_of(project) -> dict[str, list[str]]:
    return {cls: project.image_names(cls) for cls in sorted(project.class_names())}


# -- layout, ids, names ---------------------------------------------------------------------------


def test_new_project_has_the_documented_layout(studio):
    project = studio.create_project("  My Pets!  ")
    folder = studio.home / "my-pets"
    assert project.id == "my-pets" and project.folder == folder
    assert project.data == folder / "data" and project.runs == folder / "runs"
    meta = json.loads((folder / "project.json").read_text(encoding="utf-8"))
    assert meta["name"] == "My Pets!" and meta["version"] == 1
    assert meta["created"].endswith("Z") and "T" in meta["created"]
    for sub in ("data", "runs", ".studio/thumbs", ".studio/trash", ".studio/incoming"):
        assert (folder / sub).is_dir(), sub
    project.add_class("cats")
    assert (folder / ".studio" / "journal.jsonl").is_file()
    project.keep([("cats", "x.jpg")], "duplicates")
    assert (folder / ".studio" / "kept.json").is_file()
    assert [p.name for p in project.data.iterdir()] == ["cats"]  # nothing hidden in data/


def test_ids_are_unique_slugs_and_names_unique(studio):
    assert studio.create_project("Pets").id == "pets"
    assert studio.create_project("pets!").id == "pets-2"
    assert studio.create_project("Pets & more").id == "pets-more"
    assert studio.create_project("猫の写真").id == "project"
    assert studio.create_project("Ünïcode Ça").id == "unicode-ca"
    status, message = status_of(studio.create_project, "PETS")
    assert status == 409 and "already exists" in message
    assert [p["id"] for p in studio.list_projects()] == [
        "pets",
        "pets-more",
        "pets-2",
        "unicode-ca",
        "project",
    ]


def test_list_projects_is_sorted_by_name_without_classes(studio):
    studio.create_project("zebra").add_class("a")
    studio.create_project("Apple")
    listed = studio.list_projects()
    assert [p["name"] for p in listed] == ["Apple", "zebra"]
    assert listed[1]["classes"] == 1 and listed[1]["images"] == 0
    assert set(listed[0]) == {"id", "name", "created", "version", "images", "classes", "thumbs"}


def test_rename_keeps_the_id_and_refuses_a_taken_name(studio):
    project = studio.create_project("Pets")
    studio.create_project("Birds")
    version = project.version
    assert project.rename("Animals")["name"] == "Animals"
    assert project.id == "pets" and (studio.home / "pets").is_dir()
    assert project.version == version + 1
    assert json.loads((project.folder / "project.json").read_text())["name"] == "Animals"
    assert status_of(project.rename, "birds")[0] == 409
    assert studio.project("pets").name == "Animals"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../x", "slash"),
        ("a/b", "slash"),
        ("a\\b", "backslash"),
        ("a\x00b", "U+0000"),
        ("tab\there", "U+0009"),
        ("bell\x07", "U+0007"),
        ("evil\u202egpj.exe", "U+202E"),
        (".", "only dots"),
        ("..", "only dots"),
        (".hidden", "starts with a dot"),
        ("x" * 81, "81 characters"),
        ("   ", "empty"),
        ("😀" * 70, "too long for a file name"),
        ("photos.jpg", "'.jpg'"),
        ("__MACOSX", "__MACOSX"),
    ],
)
def test_bad_class_names_are_refused_with_a_sentence(pets, name, says):
    status, message = status_of(pets.add_class, name)
    assert status == 400 and says in message and message.endswith(".")
    assert sorted(pets.class_names()) == ["cats", "dogs"]


def test_bad_project_names_follow_the_same_rules(studio):
    for name in ("a/b", "..", ".x", "x" * 81, "a\x1bb"):
        assert status_of(studio.create_project, name)[0] == 400
    assert [p.name for p in studio.home.iterdir()] == [".trash"]


@pytest.mark.parametrize(
    "name", [XSS, "chat noir", "Ünïcödé 猫", 'it\'s "quoted" & <b>', "x" * 80, " padded "]
)
def test_odd_but_valid_class_names_are_stored_verbatim(pets, name):
    assert pets.add_class(name) == {"name": name.strip(), "count": 0}
    assert (pets.data / name.strip()).is_dir()
    pets.add_images(name.strip(), [("p.jpg", jpeg())])
    names = [c["name"] for c in pets.describe()["classes"]]
    assert name.strip() in names
    assert load_dataset(pets.data).class_counts()[name.strip()] == 1


def test_urls_quote_every_segment():
    assert image_url("pets", XSS, "a b#?.jpg") == (
        "/api/projects/pets/images/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/a%20b%23%3F.jpg"
    )
    assert thumb_url("p", "a/b", "..") == "/api/projects/p/thumbs/a%2Fb/.."


def test_class_names_clash_regardless_of_letter_case(pets):
    assert status_of(pets.add_class, "cats")[0] == 409
    assert status_of(pets.add_class, "CATS")[0] == 409
    assert status_of(pets.rename_class, "cats", "Dogs")[0] == 409
    action = pets.rename_class("cats", "Cats")  # a change of case of its own name is fine
    assert action["kind"] == "rename_class" and "Cats" in pets.class_names()


def test_every_change_bumps_the_version(pets, tmp_path):
    def bumps(call, *args):
        before = pets.version
        result = call(*args)
        on_disk = json.loads((pets.folder / "project.json").read_text())["version"]
        assert pets.version == before + 1 == on_disk, call.__name__
        return result

    bumps(pets.rename, "Pets 2")
    bumps(pets.add_class, "birds")
    bumps(pets.add_images, "birds", [("x.jpg", jpeg())])
    moved = bumps(pets.move_images, [("birds", "x.jpg")], "cats")
    bumps(pets.undo, moved["id"])
    bumps(pets.delete_images, [("birds", "x.jpg")])
    bumps(pets.rename_class, "birds", "parrots")
    bumps(pets.merge_class, "parrots", "dogs")
    bumps(pets.delete_class, "dogs")
    bumps(pets.keep, [("cats", "a.jpg")], "blur")
    folder = tmp_path / "more" / "cats"
    folder.mkdir(parents=True)
    (folder / "m.jpg").write_bytes(jpeg())
    bumps(pets.import_folder, tmp_path / "more")


def test_project_json_is_written_atomically(pets, monkeypatch):
    before = (pets.folder / "project.json").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the server dies while writing

    monkeypatch.setattr(journal_mod.json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        pets.rename("Other")
    assert (pets.folder / "project.json").read_text() == before
    assert not [p for p in pets.folder.iterdir() if p.name.endswith(".tmp")]


def test_studio_start_cleans_what_a_killed_server_left(pets, studio):
    (pets.folder / ".studio" / "incoming" / "upload-x1.part").write_bytes(b"half a photo")
    (pets.folder / ".studio" / "incoming" / "stale").mkdir()
    (pets.folder / ".project.json.abc.tmp").write_text("{")
    (pets.folder / ".studio" / ".kept.json.x.tmp").write_text("{")
    (pets.folder / ".studio" / "thumbs" / "ab").mkdir(parents=True)
    (pets.folder / ".studio" / "thumbs" / "ab" / ".thumb-1.tmp").write_bytes(b"x")
    before = files_of(pets)
    again = Studio(studio.home)
    assert list((pets.folder / ".studio" / "incoming").iterdir()) == []
    assert not list(pets.folder.glob(".*.tmp")) and not list(pets.folder.glob(".studio/.*.tmp"))
    assert not list((pets.folder / ".studio" / "thumbs").glob("*/.thumb-*"))
    assert files_of(again.project("pets")) == before
    assert again.project("pets").version == pets.version


def test_load_dataset_reads_a_projects_data(pets):
    dataset = load_dataset(pets.data)
    assert dataset.classes == ["cats", "dogs"]
    assert dataset.class_counts() == {"cats": 2, "dogs": 1}
    assert not dataset.skipped


def test_describe_counts_classes_images_and_thumbs(pets):
    pets.add_class("empty")
    info = pets.describe()
    assert info["images"] == 3 and info["id"] == "pets" and info["name"] == "Pets"
    assert info["classes"] == [
        {"name": "cats", "count": 2, "thumb": thumb_url("pets", "cats", "a.jpg")},
        {"name": "dogs", "count": 1, "thumb": thumb_url("pets", "dogs", "c.jpg")},
        {"name": "empty", "count": 0, "thumb": None},
    ]
    assert info["thumbs"] == [
        thumb_url("pets", "cats", "a.jpg"),
        thumb_url("pets", "dogs", "c.jpg"),
        thumb_url("pets", "cats", "b.jpg"),
    ]
    assert pets.describe(with_classes=False)["classes"] == 3


# -- images ---------------------------------------------------------------------------------------


def test_list_images_pages_sorted_by_name(pets):
    pets.add_images("cats", [(f"z{i}.jpg", jpeg()) for i in range(3)] + [("B2.jpg", jpeg())])
    page = pets.list_images("cats", offset=1, limit=2)
    assert page["total"] == 6 and page["offset"] == 1
    assert [i["name"] for i in page["images"]] == ["b.jpg", "B2.jpg"]
    image = page["images"][0]
    assert image == {
        "cls": "cats",
        "name": "b.jpg",
        "url": image_url("pets", "cats", "b.jpg"),
        "thumb": thumb_url("pets", "cats", "b.jpg"),
        "bytes": (pets.data / "cats" / "b.jpg").stat().st_size,
    }
    assert len(pets.list_images("cats", limit=10_000)["images"]) == 6
    assert status_of(pets.list_images, "nope")[0] == 404


def test_list_images_caps_the_page_at_500(pets):
    folder = pets.data / "many"
    folder.mkdir()
    for i in range(600):
        (folder / f"{i:04d}.jpg").write_bytes(b"x")
    assert len(pets.list_images("many", limit=100_000)["images"]) == 500


def test_listing_100_of_5000_is_fast(pets, monkeypatch):
    folder = pets.data / "big"
    folder.mkdir()
    for i in range(5000):
        (folder / f"img_{i:05d}.jpg").write_bytes(b"x")
    decoded = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: decoded.append(a))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        page = pets.list_images("big", offset=2500, limit=100)
        times.append(time.perf_counter() - start)
    assert page["total"] == 5000 and page["images"][0]["name"] == "img_02500.jpg"
    assert min(times) < 0.05, times
    assert not decoded


def test_image_path_stays_inside_data_and_never_follows_links(pets, tmp_path):
    assert pets.image_path("cats", "a.jpg") == pets.data / "cats" / "a.jpg"
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg())
    os.symlink(secret, pets.data / "cats" / "link.jpg")
    os.symlink(tmp_path, pets.data / "linked-class")
    os.symlink(pets.data / "cats", pets.data / "alias")
    for cls, name in [
        ("cats", "../dogs/c.jpg"),
        ("..", "project.json"),
        ("cats", "link.jpg"),
        ("linked-class", "secret.jpg"),
        ("alias", "a.jpg"),
        ("cats", "missing.jpg"),
        ("cats", ".."),
        (".studio", "kept.json"),
        ("cats", ""),
    ]:
        status, message = status_of(pets.image_path, cls, name)
        assert status == 404, (cls, name)
    assert "link.jpg" not in pets.image_names("cats")  # links are not listed either
    assert "linked-class" not in pets.class_names()


def test_every_stored_name_can_be_asked_for_again(pets):
    long = pets.add_images("cats", [("x" * 300 + ".jpg", jpeg())])["added"][0]["name"]
    assert pets.image_path("cats", long).is_file()
    (pets.data / "cats" / "bell\x07.jpg").write_bytes(jpeg())  # put there by hand
    (pets.data / "cats" / "a copy by hand.jpg").write_bytes(jpeg())
    names = pets.image_names("cats")
    assert "bell\x07.jpg" not in names and "a copy by hand.jpg" in names
    assert pets.image_path("cats", "a copy by hand.jpg").is_file()


def test_missing_class_for_upload_is_404(pets):
    status, message = status_of(pets.add_images, "birds", [("a.jpg", jpeg())])
    assert status == 404 and "birds" in message
    assert not (pets.data / "birds").exists()


def test_moving_clashing_names_get_numbered(pets):
    pets.add_images("dogs", [("a.jpg", jpeg())])
    action = pets.move_images([("cats", "a.jpg"), ("cats", "b.jpg")], "dogs")
    assert action["summary"] == "Moved 2 images from cats to dogs"
    assert action["undone"] is False and action["undoable"] is True
    assert files_of(pets) == {"cats": [], "dogs": ["a-2.jpg", "a.jpg", "b.jpg", "c.jpg"]}


def test_refs_that_vanished_answer_409_with_a_sentence(pets):
    status, message = status_of(pets.move_images, [("cats", "zzz.jpg")], "dogs")
    assert status == 409
    assert message == (
        "cats/zzz.jpg is no longer in this project (another tab may have moved it); reload to "
        "see the current images."
    )
    assert status_of(pets.delete_images, [("gone", "a.jpg")])[0] == 409
    assert status_of(pets.move_images, [("cats", "a.jpg")], "gone")[0] == 404
    assert status_of(pets.delete_images, [])[0] == 400
    assert status_of(pets.move_images, [("cats", "a.jpg")], "cats")[0] == 400
    assert files_of(pets) == {"cats": ["a.jpg", "b.jpg"], "dogs": ["c.jpg"]}


# -- undo -----------------------------------------------------------------------------------------


def test_undo_of_a_move(pets):
    before = files_of(pets)
    action = pets.move_images([("cats", "a.jpg")], "dogs")
    assert pets.undo(action["id"])["undone"] is True
    assert files_of(pets) == before
    status, message = status_of(pets.undo, action["id"])
    assert status == 409 and "already undone" in message
    assert pets.actions()[0]["undone"] is True and pets.actions()[0]["undoable"] is False


def test_undo_of_a_delete_brings_the_files_back_from_the_trash(pets):
    data = (pets.data / "cats" / "a.jpg").read_bytes()
    action = pets.delete_images([("cats", "a.jpg"), ("dogs", "c.jpg")])
    assert action["summary"] == "Deleted 2 images from 2 classes"
    trash = pets.folder / ".studio" / "trash" / action["id"]
    assert (trash / "cats" / "a.jpg").read_bytes() == data
    assert files_of(pets) == {"cats": ["b.jpg"], "dogs": []}
    pets.undo(action["id"])
    assert files_of(pets) == {"cats": ["a.jpg", "b.jpg"], "dogs": ["c.jpg"]}
    assert (pets.data / "cats" / "a.jpg").read_bytes() == data


def test_undo_of_adding_images_moves_them_to_the_trash(pets):
    answer = pets.add_images("dogs", [("new.jpg", jpeg())])
    assert [i["name"] for i in answer["added"]] == ["new.jpg"]
    action = pets.actions()[0]
    assert action["kind"] == "add" and action["summary"] == "Added 1 image to dogs"
    pets.undo(action["id"])
    assert files_of(pets)["dogs"] == ["c.jpg"]
    assert (pets.folder / ".studio" / "trash" / action["id"] / "dogs" / "new.jpg").is_file()


def test_undo_of_class_rename_merge_delete_and_add(pets):
    before = files_of(pets)
    renamed = pets.rename_class("cats", "felines")
    assert renamed["summary"] == "Renamed class cats to felines"
    pets.undo(renamed["id"])
    assert files_of(pets) == before

    pets.add_images("dogs", [("a.jpg", jpeg((1, 2, 3)))])  # clashes with cats/a.jpg
    merged = pets.merge_class("cats", "dogs")
    assert merged["summary"] == "Merged cats into dogs (2 images)"
    assert files_of(pets) == {"dogs": ["a-2.jpg", "a.jpg", "b.jpg", "c.jpg"]}
    pets.undo(merged["id"])
    assert files_of(pets) == {"cats": ["a.jpg", "b.jpg"], "dogs": ["a.jpg", "c.jpg"]}

    deleted = pets.delete_class("cats")
    assert deleted["summary"] == "Deleted class cats and its 2 images"
    assert "cats" not in pets.class_names()
    pets.undo(deleted["id"])
    assert files_of(pets)["cats"] == ["a.jpg", "b.jpg"]

    pets.add_class("birds")
    added = pets.actions()[0]
    assert added["kind"] == "add_class" and added["undoable"] is True
    pets.undo(added["id"])
    assert "birds" not in pets.class_names()


def test_undo_refuses_when_another_tab_moved_the_files(pets):
    first = pets.move_images([("cats", "a.jpg")], "dogs")
    pets.add_class("birds")
    pets.move_images([("dogs", "a.jpg")], "birds")  # the other tab
    assert next(a for a in pets.actions() if a["id"] == first["id"])["undoable"] is False
    status, message = status_of(pets.undo, first["id"])
    assert status == 409
    assert message.startswith("This change can no longer be undone: dogs/a.jpg is no longer")
    assert files_of(pets)["birds"] == ["a.jpg"]  # nothing was half-done


def test_undo_refuses_when_a_file_was_replaced_or_a_name_retaken(pets):
    added = pets.add_images("dogs", [("n.jpg", jpeg())])
    action = pets.actions()[0]
    path = pets.data / "dogs" / added["added"][0]["name"]
    path.write_bytes(jpeg((0, 0, 0), size=(50, 50)))  # replaced since
    assert status_of(pets.undo, action["id"])[0] == 409

    deleted = pets.delete_images([("cats", "a.jpg")])
    pets.add_images("cats", [("a.jpg", jpeg())])  # the name is taken again
    status, message = status_of(pets.undo, deleted["id"])
    assert status == 409 and "cats/a.jpg" in message

    gone_class = pets.delete_images([("cats", "b.jpg")])
    pets.delete_class("cats")
    status, message = status_of(pets.undo, gone_class["id"])
    assert status == 409 and "undo its deletion" in message


def test_undo_of_an_unknown_action_is_404(pets):
    assert status_of(pets.undo, "nope")[0] == 404


def test_actions_are_newest_first_and_survive_a_restart(pets, studio):
    kinds = [a["kind"] for a in pets.actions()]
    assert kinds == ["add", "add", "add_class", "add_class"]
    assert len(pets.actions(limit=2)) == 2
    action = pets.move_images([("cats", "a.jpg")], "dogs")
    with open(pets.folder / ".studio" / "journal.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "half')  # a killed server's last, unfinished line
    again = Studio(studio.home).project("pets")
    assert again.actions()[0]["id"] == action["id"]
    again.undo(action["id"])
    assert Studio(studio.home).project("pets").actions()[0]["undone"] is True


# -- two tabs at once -----------------------------------------------------------------------------


def test_one_project_object_per_id(studio, pets):
    assert studio.project("pets") is pets
    assert studio.project("pets").lock is pets.lock
    assert status_of(studio.project, "../etc")[0] == 404
    assert status_of(studio.project, "nope")[0] == 404


def test_two_tabs_moving_the_same_image(pets):
    pets.add_class("birds")
    barrier = threading.Barrier(2)
    results: list = []

    def tab(to):
        barrier.wait()
        try:
            results.append(pets.move_images([("cats", "a.jpg")], to)["kind"])
        except StudioError as exc:
            results.append(exc.status)

    threads = [threading.Thread(target=tab, args=(to,)) for to in ("dogs", "birds")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == ["409", "move"]
    placed = files_of(pets)
    assert placed["dogs"].count("a.jpg") + placed["birds"].count("a.jpg") == 1


def test_two_tabs_uploading_the_same_name_keep_both(pets):
    barrier = threading.Barrier(4)

    def tab():
        barrier.wait()
        pets.add_images("dogs", [("same.jpg", jpeg())])

    threads = [threading.Thread(target=tab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert files_of(pets)["dogs"] == ["c.jpg", "same-2.jpg", "same-3.jpg", "same-4.jpg", "same.jpg"]


# -- project trash --------------------------------------------------------------------------------


def test_trash_and_restore_a_project(studio, pets):
    before = files_of(pets)
    trash_id = studio.trash_project("pets")
    assert not (studio.home / "pets").exists()
    assert (studio.home / ".trash" / trash_id / "project.json").is_file()
    items = studio.list_trash()
    assert [(i["trash_id"], i["name"]) for i in items] == [(trash_id, "Pets")]
    assert items[0]["deleted"].endswith("Z")
    assert studio.list_projects() == []
    assert status_of(pets.add_class, "x")[0] == 404  # another tab still holds the object
    assert status_of(studio.project, "pets")[0] == 404
    restored = studio.restore(trash_id)
    assert restored.id == "pets" and files_of(restored) == before
    assert studio.list_trash() == []
    assert status_of(studio.restore, trash_id)[0] == 404


def test_restore_refuses_when_the_id_or_name_is_taken_again(studio, pets):
    trash_id = studio.trash_project("pets")
    studio.create_project("Pets")  # takes the id pets again
    status, message = status_of(studio.restore, trash_id)
    assert status == 409 and "pets" in message
    studio.trash_project("pets")
    studio.create_project("Pets x").rename("Pets")  # the id is free, the name is not
    status, message = status_of(studio.restore, trash_id)
    assert status == 409 and "called 'Pets'" in message
    assert (studio.home / ".trash" / trash_id).is_dir()


# -- thumbnails -----------------------------------------------------------------------------------


def test_thumbnail_is_a_small_cached_jpeg(pets):
    pets.add_images("cats", [("big.jpg", jpeg(size=(1200, 600)))])
    path = pets.thumbnail("cats", "big.jpg")
    assert path.is_relative_to(pets.folder / ".studio" / "thumbs")
    with Image.open(path) as im:
        assert im.format == "JPEG" and max(im.size) == 192 and im.size == (192, 96)
    stamp = path.stat().st_mtime_ns
    assert pets.thumbnail("cats", "big.jpg") == path and path.stat().st_mtime_ns == stamp


def test_thumbnail_changes_when_the_file_changes(pets):
    first = pets.thumbnail("cats", "a.jpg")
    target = pets.data / "cats" / "a.jpg"
    target.write_bytes(jpeg((0, 0, 0), size=(64, 64)))
    os.utime(target, ns=(1, 1))
    second = pets.thumbnail("cats", "a.jpg")
    assert second != first
    with Image.open(second) as im:
        assert im.size == (64, 64)


def test_thumbnail_applies_exif_orientation_and_drafts_jpegs(pets, monkeypatch):
    im = Image.new("RGB", (300, 100), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    pets.add_images("cats", [("rotated.jpg", buf.getvalue())])
    drafts = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    path = pets.thumbnail("cats", "rotated.jpg")
    with Image.open(path) as thumb:
        assert thumb.size == (64, 192)  # portrait: the orientation was applied
    assert drafts == [(192, 192)]


def test_thumbnail_of_an_unreadable_file_is_422(pets):
    (pets.data / "cats" / "broken.jpg").write_bytes(b"not a picture")
    status, message = status_of(pets.thumbnail, "cats", "broken.jpg")
    assert status == 422 and "not an image" in message
    assert status_of(pets.thumbnail, "cats", "missing.jpg")[0] == 404


def test_thumbnails_decode_one_image_at_a_time(pets, monkeypatch):
    names = [f"t{i}.jpg" for i in range(6)]
    pets.add_images("cats", [(n, jpeg(size=(300, 200))) for n in names])
    active, most = [0], [0]
    real = thumbs_mod.open_image

    def counting(*args, **kwargs):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.01)
        try:
            return real(*args, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(thumbs_mod, "open_image", counting)
    threads = [threading.Thread(target=pets.thumbnail, args=("cats", n)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


# -- kept audit findings --------------------------------------------------------------------------


def test_keep_remembers_findings_per_check(pets, studio):
    pets.keep([("cats", "a.jpg"), ("dogs", "c.jpg")], "duplicates")
    pets.keep([("cats", "b.jpg")], "duplicates")
    pets.keep([("cats", "a.jpg")], "blur")
    expected = {
        "duplicates": {("cats", "a.jpg"), ("dogs", "c.jpg"), ("cats", "b.jpg")},
        "blur": {("cats", "a.jpg")},
    }
    assert pets.kept() == expected
    assert Studio(studio.home).project("pets").kept() == expected
    assert status_of(pets.keep, [("cats", "a.jpg")], "")[0] == 400


# -- the project zip ------------------------------------------------------------------------------


def _fake_run(folder: Path, files: dict[str, str | bytes], mtime: int) -> None:
    folder.mkdir(parents=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        os.utime(path, (mtime, mtime))


def _export(project) -> zipfile.ZipFile:
    buf = io.BytesIO()
    project.export_zip(buf)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def test_export_writes_data_labels_split_model_and_project(pets):
    split = "path,label,split\n../../data/cats/a.jpg,cats,train\n../../data/dogs/c.jpg,dogs,val\n"
    _fake_run(pets.runs / "train", {"split.csv": "path,label,split\n"}, 1_000_000)
    _fake_run(pets.runs / "train-2", {"split.csv": split, "model.imgrec": b"old"}, 2_000_000)
    card = {"model_card.md": "# card", "model_card.html": "<h1>card</h1>", "metrics.json": "{}"}
    _fake_run(pets.runs / "train-3", {"model.imgrec": b"new", **card}, 3_000_000)
    pets.add_class("empty")
    zf = _export(pets)
    names = set(zf.namelist())
    assert names == {
        "data/cats/a.jpg",
        "data/cats/b.jpg",
        "data/dogs/c.jpg",
        "labels.csv",
        "split.csv",
        "model.imgrec",
        "model_card.md",
        "model_card.html",
        "metrics.json",
        "project.json",
    }
    assert zf.read("data/cats/a.jpg") == (pets.data / "cats" / "a.jpg").read_bytes()
    assert zf.getinfo("data/cats/a.jpg").compress_type == zipfile.ZIP_STORED
    assert zf.read("labels.csv").decode() == (
        "path,label\ndata/cats/a.jpg,cats\ndata/cats/b.jpg,cats\ndata/dogs/c.jpg,dogs\n"
    )
    assert zf.read("split.csv").decode() == (
        "path,label,split\ndata/cats/a.jpg,cats,train\ndata/dogs/c.jpg,dogs,val\n"
    )
    assert zf.read("model.imgrec") == b"new"
    meta = json.loads(zf.read("project.json"))
    assert meta["name"] == "Pets" and meta["classes"] == ["cats", "dogs", "empty"]


def test_exported_zip_is_an_imgrec_dataset(pets, tmp_path):
    _export(pets).extractall(tmp_path / "out")
    assert load_dataset(tmp_path / "out" / "labels.csv").class_counts() == {"cats": 2, "dogs": 1}
    assert load_dataset(tmp_path / "out" / "data").class_counts() == {"cats": 2, "dogs": 1}


def _real_model(path: Path) -> bytes:
    import torch

    from imgrec.bundle import save_bundle

    metadata = {
        "classes": ["cats", "dogs"],
        "model": "x",
        "preprocessing": {"input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "resize_size": 36},
    }
    save_bundle(path, {"w": torch.zeros(2)}, metadata)
    return path.read_bytes()


def test_import_of_a_project_zip_makes_a_new_project(studio, pets, tmp_path):
    model = _real_model(tmp_path / "model.imgrec")
    split = "path,label,split\n../../data/cats/a.jpg,cats,train\n../../data/dogs/c.jpg,dogs,val\n"
    _fake_run(pets.runs / "train", {"model.imgrec": model, "split.csv": split}, 1_000_000)
    pets.add_class(XSS)
    zip_path = tmp_path / "pets.zip"
    zip_path.write_bytes(b"")
    with open(zip_path, "wb") as out:
        pets.export_zip(out)
    copy = studio.import_project_zip(zip_path)
    assert copy.id == "pets-2" and copy.name == "Pets (2)"
    assert files_of(copy) == {**files_of(pets)}
    assert (copy.data / XSS).is_dir()
    run = copy.runs / "imported"
    assert (run / "model.imgrec").read_bytes() == model
    assert (run / "split.csv").read_text().splitlines() == [
        "path,label,split",
        "../../data/cats/a.jpg,cats,train",
        "../../data/dogs/c.jpg,dogs,val",
    ]
    assert copy.actions()[0]["kind"] == "import"
    named = studio.import_project_zip(zip_path, name="Copy")
    assert named.name == "Copy" and named.id == "copy"


def test_import_leaves_out_a_model_imgrec_does_not_accept(studio, pets, tmp_path):
    _fake_run(pets.runs / "train", {"model.imgrec": b"not a model"}, 1_000_000)
    zip_path = tmp_path / "pets.zip"
    with open(zip_path, "wb") as out:
        pets.export_zip(out)
    copy = studio.import_project_zip(zip_path)
    assert not (copy.runs / "imported").exists()
    assert "model was left out" in copy.actions()[0]["summary"]
    assert load_dataset(copy.data).class_counts() == {"cats": 2, "dogs": 1}


def test_import_refuses_a_zip_that_is_not_a_project(studio, tmp_path):
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("cats/a.jpg", jpeg())
    status, message = status_of(studio.import_project_zip, zip_path)
    assert status == 422 and "not an imgrec studio project" in message
    (tmp_path / "junk.zip").write_bytes(b"no zip at all")
    assert "not a zip" in status_of(studio.import_project_zip, tmp_path / "junk.zip")[1]
    assert studio.list_projects() == []
