"""Adding images to a project safely: uploaded bytes, a zip, a folder on this machine, a CSV.

Every file takes one road. It is written (or copied, in chunks, with a size limit) to
.studio/incoming/ first; imgrec's own `check_image` checks it (data/decode.py: the header,
the size limits and, for JPEG and PNG, that the compressed data is whole), so a truncated
file, a text file named .jpg or a decompression bomb is refused with the reason decoding
would give, at about a tenth of a decode's cost; damage inside a photo's compressed data is
found later by decoding it (its thumbnail says so, the audit lists it, training skips it
and names it). Then, under the project's lock, it is renamed into data/<class>/ with
os.replace under a free name. A server killed at any moment leaves at most a temporary file
in incoming/ (removed when the studio starts), never half a photo in data/. Uploads, the
common case, take a shorter road on Linux: written as a nameless file (O_TMPFILE) inside the
class folder and named once complete (linkat), which leaves nothing at all behind a kill
and costs the file system what a copy costs. The original bytes are kept (no re-encoding);
only the extension is made to match the real format.

A zip from someone else is untrusted input: entries that would land outside the project
(absolute paths, '..'), symbolic links and bad class names are refused one by one, and the
whole zip is refused when its directory promises a bomb (too many entries, too many bytes,
an absurd compression ratio). Sizes are enforced while reading, not taken from the headers.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import io
import os
import re
import stat
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from imgrec.data.dataset import SPLIT_ALIASES, path_label_columns, read_csv_rows
from imgrec.data.decode import UnreadableImage, check_image
from imgrec.errors import ImgrecError
from imgrec.studio.errors import StudioError
from imgrec.studio.journal import signature
from imgrec.studio.names import (
    class_or_problem,
    inside,
    is_junk,
    name_order,
    numbered,
    sanitise_file_name,
    shown,
    unique_name,
    with_extension,
)
from imgrec.text import printable

MAX_FILE_BYTES = 50 * 1024 * 1024  # one image
MAX_ZIP_ENTRIES = 50_000
MAX_ZIP_BYTES = 4 * 1024**3  # the declared total, uncompressed
MAX_RATIO = 200  # uncompressed / compressed, per entry
# Below this size an entry cannot be a bomb whatever its ratio, and small flat images
# legitimately compress far beyond 200:1 (a 192 x 192 one-colour BMP: about 400:1).
RATIO_MIN_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
LABELS_FILE = "labels.csv"

# Pillow's format -> the extension the file is stored with; the second set: also accepted.
EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "BMP": ".bmp",
}
SAME_EXTENSION = {".jpg": frozenset({".jpeg"}), ".tif": frozenset({".tiff"})}
_SPLIT_NAMES = frozenset(SPLIT_ALIASES)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOT_IN_CLASS = (
    "not inside a class folder; put each class's images in a folder named after the class"
)


class Rejected(Exception):
    """One file refused; the message is the reason the page lists next to its name."""


def rejection(filename: str, error: str) -> dict:
    """A refused file as the page lists it: {filename (printable), error}."""
    return {"filename": printable(filename), "error": error}


@dataclass(frozen=True)
class _OpenFolder:
    """A class folder an upload batch writes into: its spelling, path, open descriptor, and
    (device, inode) to tell whether the path still leads to it."""

    cls: str
    path: Path
    fd: int
    identity: tuple[int, int]


@dataclass
class Ingest:
    """One batch of incoming images for one project: stage, verify, place, and the report.

    `lock` is the project's; it is held only to place a verified file, so a long import
    leaves other tabs free to work. `guard` (called under the lock) raises when the project
    went away meanwhile. With `create_classes`, a missing class folder is made (imports);
    without it, a class deleted meanwhile rejects the file (uploads into a chosen class).
    """

    data: Path
    incoming: Path
    lock: threading.RLock
    create_classes: bool = True
    guard: Callable[[], None] = lambda: None
    added: list[list] = field(default_factory=list)  # [cls, name, size, mtime_ns]
    rejected: list[dict] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    _folders: dict[str, Path] = field(default_factory=dict, repr=False)  # checked this batch
    _open_folders: dict[str, _OpenFolder] = field(default_factory=dict, repr=False)

    def reject(self, filename: str, error: str) -> None:
        self.rejected.append(rejection(filename, error))

    def add_uploads(self, files: list[tuple[str, bytes]], cls: str) -> None:
        """Uploads (name as the browser sent it, bytes), in request order, each checked in
        memory before anything touches the disk."""
        try:
            for filename, payload in files:
                check = _checked_upload(payload)
                if isinstance(check, Rejected):
                    self.reject(filename, str(check))
                    continue
                try:
                    if self._write_unnamed(payload, cls, _stored_name(filename, check)):
                        continue
                except Rejected as exc:
                    self.reject(filename, str(exc))
                    continue
                with staged(self.incoming) as (tmp, out):
                    out.write(payload)
                    out.close()
                    self._named_place(tmp, filename, cls, check)
        finally:
            for folder in self._open_folders.values():
                os.close(folder.fd)
            self._open_folders.clear()

    def _write_unnamed(self, payload: bytes, cls: str, name: str) -> bool:
        """Write `payload` as a file with no name yet (O_TMPFILE) inside data/<cls>/ and give
        it a free name once complete, in one step (linkat): a killed server leaves nothing,
        not even a temporary file, and the file system does one create, as a copy does,
        instead of a create and a rename between folders. False where the system or the
        file system has no O_TMPFILE (then the caller stages the file in incoming/)."""
        if not _TMPFILE_OK[0]:
            return False
        folder = self._open_folder(cls)
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=folder.fd)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # no O_TMPFILE
                _TMPFILE_OK[0] = False
                return False
            raise Rejected(f"could not be saved: {exc.strerror or exc}") from None
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            st = os.fstat(fd)
            with self.lock:
                self._check_still_there(folder)
                final = _link_free_name(fd, folder.fd, name)
                self.added.append([folder.cls, final, st.st_size, st.st_mtime_ns])
        except OSError as exc:
            raise Rejected(f"could not be saved: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        return True

    def _open_folder(self, cls: str) -> _OpenFolder:
        """data/<cls> open as a folder descriptor for the rest of the batch: each photo is then
        created and named relative to it, with no walk down the path, and the project and
        class are checked with one lstat per photo instead of four path walks (a profile of
        the server during uploads had them at about a fifth of its samples)."""
        folder = self._open_folders.get(cls)
        if folder is None:
            with self.lock:
                self.guard()
                spelling = self._existing_spelling(cls)
                path = self._class_folder(spelling)
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW | os.O_CLOEXEC)
                st = os.fstat(fd)
                folder = _OpenFolder(spelling, path, fd, (st.st_dev, st.st_ino))
                self._open_folders[cls] = folder
        return folder

    def _check_still_there(self, folder: _OpenFolder) -> None:
        """Under the lock, before a photo is named: data/<cls> still is the folder open since
        the batch began (not deleted, renamed or replaced by another tab, the project not
        moved to the trash). One lstat: it walks the whole path, so it sees the project too."""
        try:
            st = os.lstat(folder.path)
            if (st.st_dev, st.st_ino) == folder.identity:
                return
        except OSError:
            pass
        self.guard()  # the project itself went away: its own answer (404)
        raise _class_gone(folder.cls)

    def add_stream(self, filename: str, src: BinaryIO, declared: int, cls: str) -> None:
        """A file read from a zip or a disk in chunks, never more than `declared` bytes (what
        its header or stat said) nor MAX_FILE_BYTES."""
        if declared > MAX_FILE_BYTES:
            self.reject(filename, _too_big(declared))
            return
        try:
            with staged(self.incoming) as (tmp, out):
                copy_limited(src, out, declared)
                out.close()
                self._finish(tmp, filename, cls)
        except Rejected as exc:
            self.reject(filename, str(exc))

    def add_file(self, path: Path, filename: str, cls: str) -> None:
        """A file on this machine, copied in (the original is only read); a symbolic link is
        refused, not followed."""
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK)
        except OSError as exc:
            self.reject(filename, _open_reason(path, exc))
            return
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.reject(filename, "not a regular file")
                return
            os.set_blocking(fd, True)
            self.add_stream(filename, src, st.st_size, cls)

    def _finish(self, tmp: Path, filename: str, cls: str) -> None:
        try:
            ext = verified_extension(tmp)
        except Rejected as exc:
            self.reject(filename, str(exc))
            return
        self._named_place(tmp, filename, cls, ext)

    def _named_place(self, tmp: Path, filename: str, cls: str, ext: str) -> None:
        name = _stored_name(filename, ext)
        try:
            self._place(tmp, cls, name)
        except Rejected as exc:
            self.reject(filename, str(exc))

    def _place(self, tmp: Path, cls: str, name: str) -> None:
        """Rename a checked file into data/<cls>/ under a free name. `name` is one sanitised
        path part (never '..', no slash), and a rename never follows a link in its last
        part, so only the class folder needs resolving: once per batch (a realpath per file
        was a third of an upload's time), then an lstat per file that sees it still is that
        real folder."""
        with self.lock:
            self.guard()
            cls = self._existing_spelling(cls)
            folder = self._class_folder(cls)
            final = unique_name(folder, name)
            target = folder / final
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise Rejected(f"could not be saved: {exc.strerror or exc}") from None
            self.added.append([cls, final, *(signature(target) or [0, 0])])

    def _class_folder(self, cls: str) -> Path:
        """data/<cls>, checked to be a real folder inside the project (made if the batch may
        create classes); Rejected when it is gone or is a link."""
        folder = self._folders.get(cls)
        if folder is not None:
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(folder).st_mode):
                    return folder
        try:
            folder = inside(self.data, self.data / cls)
        except StudioError:  # a symbolic link someone put in data/
            raise Rejected(f"the class {shown(cls)} is not a real folder") from None
        if not os.path.isdir(folder):
            if not self.create_classes or os.path.lexists(folder):
                raise _class_gone(cls)
            os.mkdir(folder)
            self.created.append(cls)
        self._folders[cls] = folder
        return folder

    def _existing_spelling(self, cls: str) -> str:
        """An imported folder 'Cats' joins the class 'cats' rather than making a second class
        that differs only in letter case (which add_class refuses too)."""
        if not self.create_classes or os.path.lexists(self.data / cls):
            return cls
        with os.scandir(self.data) as entries:
            same = [e.name for e in entries if e.name.casefold() == cls.casefold()]
        return same[0] if same else cls

    def classes(self) -> list[str]:
        """The classes this batch added images to or created, in name order."""
        return sorted({cls for cls, *_ in self.added} | set(self.created), key=name_order)

    def answer(self) -> dict:
        """{added: count, rejected, classes}: what an import answers."""
        return {"added": len(self.added), "rejected": self.rejected, "classes": self.classes()}


def _class_gone(cls: str) -> Rejected:
    return Rejected(
        f"the class {shown(cls)} no longer exists (another tab may have deleted it); reload "
        "the page and add the images again"
    )


def _stored_name(filename: str, ext: str) -> str:
    """The name a file is kept under: the sent name made safe, with its real format's
    extension."""
    return with_extension(sanitise_file_name(filename), ext, SAME_EXTENSION.get(ext, frozenset()))


# Whether O_TMPFILE works here; turned off for the process at the first file system that
# refuses it. Linux only: elsewhere uploads are staged in incoming/ and renamed.
_TMPFILE_OK = [hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")]


@functools.cache
def _root_fd() -> int:
    """The root folder, open once: os.link follows /proc/self/fd's link only through linkat,
    which it calls when given a dir_fd."""
    return os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _link_free_name(fd: int, folder_fd: int, name: str) -> str:
    """Give the unnamed file open as `fd` the first free name of `numbered(name)` in the
    folder open as `folder_fd`: linkat refuses an existing name, so no other writer can slip
    in between the choice of a name and its use."""
    for candidate in numbered(name):
        try:
            os.link(f"proc/self/fd/{fd}", candidate, src_dir_fd=_root_fd(), dst_dir_fd=folder_fd)
            return candidate
        except FileExistsError:
            continue
    raise AssertionError("numbered() never ends")


def _too_big(size: int) -> str:
    return f"{size / 1e6:.0f} MB is over the limit of {MAX_FILE_BYTES // 2**20} MB per image"


@contextlib.contextmanager
def staged(incoming: Path, prefix: str = "upload-") -> Iterator[tuple[Path, BinaryIO]]:
    """A temporary file in incoming/, removed on the way out unless it was moved into place."""
    incoming.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=incoming, prefix=prefix, suffix=".part")
    tmp = Path(name)
    out = os.fdopen(fd, "wb")
    try:
        yield tmp, out
    finally:
        out.close()
        tmp.unlink(missing_ok=True)


def _checked_upload(payload: bytes) -> str | Rejected:
    """The stored extension of an upload, or why it is refused (checked in memory, before
    anything touches the disk)."""
    if len(payload) > MAX_FILE_BYTES:
        return Rejected(_too_big(len(payload)))
    try:
        return verified_extension(payload)
    except Rejected as exc:
        return exc


def copy_limited(src: BinaryIO, out: BinaryIO, declared: int, most: int = MAX_FILE_BYTES) -> None:
    """Copy in chunks, at most `most` bytes; a source that holds more than it declared is
    refused (a zip whose header lies about a bomb, a file that grew while being read)."""
    limit = min(declared, most)
    total = 0
    try:
        while chunk := src.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise Rejected(
                    "holds more data than its size says (a damaged zip or a file being written)"
                    if total > declared
                    else _too_big(total)
                )
            out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise Rejected(f"damaged inside the zip ({exc})") from None
    except OSError as exc:
        raise Rejected(f"cannot be read: {exc.strerror or exc}") from None


def verified_extension(source: Path | bytes) -> str:
    """The extension of the real format of `source` (a staged file or an upload's bytes), once
    `check_image` has passed it; Rejected with its reason."""
    try:
        fmt = check_image(source)
    except UnreadableImage as exc:
        raise Rejected(str(exc)) from None
    if fmt not in EXTENSIONS:
        raise Rejected(f"an image in {fmt or 'an unknown'} format, which imgrec does not read")
    return EXTENSIONS[fmt]


def _open_reason(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and os.path.islink(path)):
        return "a symbolic link (not followed)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "file not found"
    return f"cannot be read: {exc.strerror or exc}"


# -- layout: which class a file belongs to -------------------------------------------------------


def classes_for(paths: list[tuple[str, ...]], strip_top: bool) -> list[str | None]:
    """The class of each file (given as path parts), or None for a file in no class folder.

    The first folder level is the class, images anywhere below it belong to it (as in an
    imgrec dataset); a first level named train/val/test that holds only folders is a split
    folder, and the level below it is the class. With `strip_top` (a zip) one folder around
    everything is unwrapped first: pets.zip/pets/cats/1.jpg -> cats.
    """
    if strip_top and _single_top(paths):
        paths = [p[1:] for p in paths]
    splits = _split_folders(paths)
    out: list[str | None] = []
    for parts in paths:
        if len(parts) >= 3 and parts[0] in splits:
            out.append(parts[1])
        else:
            out.append(parts[0] if len(parts) >= 2 else None)
    return out


def _single_top(paths: list[tuple[str, ...]]) -> bool:
    """Every file lies in one top folder, and some file lies in a folder inside it."""
    tops = {p[0] for p in paths if len(p) >= 2}
    return len(tops) == 1 and all(len(p) >= 2 for p in paths) and any(len(p) >= 3 for p in paths)


def _split_folders(paths: list[tuple[str, ...]]) -> set[str]:
    """First-level folders named like a split whose files all sit in sub-folders."""
    names = {p[0] for p in paths if len(p) >= 2 and p[0].lower() in _SPLIT_NAMES}
    return {n for n in names if all(len(p) >= 3 for p in paths if p[0] == n)}


def _classified(
    ingest: Ingest, items: list[tuple[str, tuple[str, ...]]], classes: list[str | None]
) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """(shown name, path parts, class) of each item whose class is usable; the rest rejected."""
    for (label, parts), cls in zip(items, classes, strict=True):
        clean, problem = (None, _NOT_IN_CLASS) if cls is None else class_or_problem(cls)
        if clean is None:
            ingest.reject(label, problem or _NOT_IN_CLASS)
        else:
            yield label, parts, clean


# -- zip -----------------------------------------------------------------------------------------


def open_zip(path: Path) -> zipfile.ZipFile:
    """The zip at `path` once its directory passed the whole-zip checks; else StudioError."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise StudioError(
            "That file is not a zip archive (or it is damaged); choose a .zip file.", 400
        ) from None
    try:
        check_zip(zf.infolist())
    except StudioError:
        zf.close()
        raise
    return zf


def check_zip(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip whose directory promises a bomb: one sentence for the whole zip."""
    if len(infos) > MAX_ZIP_ENTRIES:
        raise StudioError(
            f"The zip holds {len(infos):,} entries, over the limit of {MAX_ZIP_ENTRIES:,}; "
            "split it into smaller zips."
        )
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_BYTES:
        raise StudioError(
            f"The zip would unpack to {total / 1e9:.1f} GB, over the limit of "
            f"{MAX_ZIP_BYTES / 2**30:.0f} GB; split it into smaller zips."
        )
    for info in infos:
        if info.file_size >= RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(
            info.compress_size, 1
        ):
            raise StudioError(
                f"The zip entry {shown(info.filename)} would unpack to "
                f"{info.file_size // max(info.compress_size, 1):,} times its packed size, "
                "which is how zip bombs look; it was not opened."
            )


def entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path parts of a zip entry, or Rejected when it may not be extracted."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        raise Rejected("a symbolic link, which is never extracted")
    if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise Rejected("not a regular file")
    if info.flag_bits & 0x1:
        raise Rejected("encrypted; unzip it with its password first")
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise Rejected("an absolute path, which would land outside the project")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise Rejected("a path with '..', which would land outside the project")
    return parts


def import_zip(ingest: Ingest, zip_path: Path, cls: str | None = None) -> None:
    """Images of a zip: a folder per class (or loose images into `cls`); a project zip
    (with labels.csv) by its labels."""
    with open_zip(zip_path) as zf:
        entries = zip_files(zf.infolist(), ingest.reject)
        if LABELS_FILE in entries and cls is None:
            import_by_labels(ingest, zf, entries)
            return
        items = [(info.filename, parts) for parts, info in entries.values()]
        if cls is not None:
            classes: list[str | None] = [cls] * len(items)
        else:
            classes = classes_for([parts for _, parts in items], strip_top=True)
        for label, parts, klass in _classified(ingest, items, classes):
            info = entries["/".join(parts)][1]
            with zf.open(info) as src:
                ingest.add_stream(label, src, info.file_size, klass)


def zip_files(
    infos: list[zipfile.ZipInfo], reject: Callable[[str, str], None]
) -> dict[str, tuple[tuple[str, ...], zipfile.ZipInfo]]:
    """The zip's file entries that may be extracted, by normalised path; refused entries and
    folders with nothing in them go to `reject`, system junk (__MACOSX, .DS_Store) is skipped."""
    files: dict[str, tuple[tuple[str, ...], zipfile.ZipInfo]] = {}
    folders: dict[str, str] = {}
    for info in infos:
        try:
            parts = entry_parts(info)
        except Rejected as exc:
            reject(info.filename, str(exc))
            continue
        if not parts or any(is_junk(p) for p in parts):
            continue
        if info.is_dir():
            folders["/".join(parts)] = info.filename
        else:
            files["/".join(parts)] = (parts, info)
    used = {"/".join(parts[:i]) for parts, _ in files.values() for i in range(1, len(parts))}
    for path, filename in folders.items():
        if path not in used:
            reject(filename, "a folder with no files in it")
    return files


def import_by_labels(
    ingest: Ingest,
    zf: zipfile.ZipFile,
    entries: dict[str, tuple[tuple[str, ...], zipfile.ZipInfo]],
) -> dict[str, str]:
    """The images a project zip's labels.csv lists, each into its label's class; returns
    {path in the zip: stored 'class/name'} for those added (a split file follows them)."""
    stored: dict[str, str] = {}
    for line_no, path, label in read_labels(zf, entries):
        item = entries.get(path)
        if item is None:
            ingest.reject(path, f"listed on row {line_no} of {LABELS_FILE} but not in the zip")
            continue
        cls, problem = class_or_problem(label)
        if cls is None:
            ingest.reject(path, problem or "no label")
            continue
        before = len(ingest.added)
        with zf.open(item[1]) as src:
            ingest.add_stream(path, src, item[1].file_size, cls)
        if len(ingest.added) > before:
            cls, name, *_ = ingest.added[-1]
            stored[path] = f"{cls}/{name}"
    return stored


def read_labels(
    zf: zipfile.ZipFile, entries: dict[str, tuple[tuple[str, ...], zipfile.ZipInfo]]
) -> list[tuple[int, str, str]]:
    """(row, normalised path, label) of every row of the zip's labels.csv."""
    rows = read_zip_csv(zf, entries[LABELS_FILE][1])
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "path" not in header or "label" not in header:
        raise StudioError(f"The zip's {LABELS_FILE} needs the columns path,label; it lacks them.")
    col_path, col_label = header.index("path"), header.index("label")
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row] + [""] * len(header)
        if cells[col_path]:
            path = str(PurePosixPath(cells[col_path].replace("\\", "/")))
            out.append((line_no, path, cells[col_label]))
    return out


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, most: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a small zip entry, read in chunks with a size limit; Rejected beyond it."""
    buffer = io.BytesIO()
    with zf.open(info) as src:
        copy_limited(src, buffer, info.file_size, most)
    return buffer.getvalue()


def read_zip_csv(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[list[str]]:
    """The rows of a CSV file inside a zip, read with the size limit of an image."""
    try:
        text = read_member(zf, info).decode("utf-8-sig")
    except (Rejected, UnicodeDecodeError) as exc:
        raise StudioError(
            f"The zip's {shown(info.filename)} cannot be read ({exc}); export the project again."
        ) from None
    return list(csv.reader(io.StringIO(text, newline="")))


# -- a folder or a CSV on this machine -----------------------------------------------------------


def import_folder(ingest: Ingest, root: Path) -> None:
    """A folder per class (or train/val/test folders above them), copied in; symbolic links
    are reported and not followed, the original folder is only read."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise StudioError(
            f"There is no folder {shown(str(root))} on this machine; type the full path of a "
            "folder that holds a folder per class."
        )
    items = list(_walk(ingest, root))
    classes = classes_for([parts for _, parts in items], strip_top=False)
    for label, parts, cls in _classified(ingest, items, classes):
        ingest.add_file(root.joinpath(*parts), label, cls)


def _walk(ingest: Ingest, root: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(shown path, parts) of every visible file below `root`, in name order."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        keep = []
        for d in sorted(dirnames):
            if is_junk(d):
                continue
            if os.path.islink(here / d):
                ingest.reject("/".join((*rel, d)), "a symbolic link (not followed)")
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not is_junk(name):
                yield "/".join((*rel, name)), (*rel, name)


def import_csv(ingest: Ingest, csv_path: Path) -> None:
    """The files a CSV lists (columns path,label; relative paths from the CSV's folder)."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise StudioError(
            f"There is no CSV file {shown(str(csv_path))} on this machine; type the full path "
            "of a CSV with the columns path,label."
        )
    try:
        rows = read_csv_rows(csv_path)
        header, col_path, col_label = path_label_columns(rows, csv_path)
    except ImgrecError as exc:
        raise StudioError(str(exc)) from None
    seen: set[str] = set()
    for line_no, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row] + [""] * len(header)
        path, label = cells[col_path], cells[col_label]
        if not path and not label:
            continue
        file = os.path.abspath(csv_path.parent / path)  # an absolute path stays as it is
        cls, problem = _row_class(path, label, file in seen, line_no)
        if cls is None:
            ingest.reject(path or f"row {line_no}", problem or "no label")
            continue
        seen.add(file)
        ingest.add_file(Path(file), path, cls)


def _row_class(path: str, label: str, seen: bool, line_no: int) -> tuple[str | None, str | None]:
    """(class, None) for a usable CSV row, else (None, why)."""
    if not path:
        return None, f"row {line_no} of the CSV has no path"
    if not label:
        return None, f"row {line_no} of the CSV has no label"
    if seen:
        return None, f"listed again on row {line_no} of the CSV"
    return class_or_problem(label)
