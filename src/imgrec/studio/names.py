"""Names that come from the page or from other people's files, checked before they touch a disk.

A class name becomes a folder under data/, a project's display name its id's source, and an
uploaded file's name a file in a class folder. Every one is a path segment, so a name that
could climb out ('..'), nest ('a/b'), hide ('.x'), drive a terminal (control characters) or
exceed a file system's limit is refused here with a sentence that names the problem. What a
name may hold beyond that (spaces, any script, '<', '&', quotes) is kept verbatim: the page
escapes what it shows.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from imgrec.data.decode import IMAGE_EXTENSIONS
from imgrec.studio.errors import StudioError
from imgrec.text import UNSAFE_CHARACTER, shown

MAX_NAME = 80  # characters, after stripping
MAX_NAME_BYTES = 255  # UTF-8 bytes: the longest file or folder name ext4, APFS and NTFS take
MAX_FILE_NAME = 120  # characters of a stored image's name, extension included

# C0 and C1 controls, DEL, lone surrogates (undecodable bytes of a file name), line and
# paragraph separators and the bidi controls that make "gpj.exe" read "exe.jpg".
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})")
_SEPARATORS = {"/": "a slash '/'", "\\": "a backslash '\\'"}
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


def _char_name(ch: str) -> str:
    """How a refused character is named in a sentence: U+0007 (BELL)."""
    return f"U+{ord(ch):04X} ({unicodedata.name(ch, 'a control character')})"


def name_problem(name: str) -> str | None:
    """Why `name` (already stripped) cannot be a folder or file name here, or None."""
    if not name:
        return "is empty"
    for sep, words in _SEPARATORS.items():
        if sep in name:
            return f"contains {words}, which would make a folder inside a folder"
    bad = UNSAFE_CHARACTER.search(name)
    if bad:
        return f"contains the invisible control character {_char_name(bad.group())}"
    if name in (".", ".."):
        return "is only dots, which a folder name cannot be"
    if name.startswith("."):
        return "starts with a dot, which hides it as a folder or file"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is too long for a file name ({len(name.encode('utf-8'))} bytes in UTF-8)"
    return None


def check_name(name: object, what: str = "class name") -> str:
    """`name` stripped and in Unicode NFC (so the same letters typed on any system match), or
    a 400 StudioError naming what is wrong with it."""
    if not isinstance(name, str):
        raise StudioError(f"The {what} must be text; type a name.")
    clean = unicodedata.normalize("NFC", name.strip())
    problem = name_problem(clean)
    if problem:
        raise StudioError(f"The {what} '{shown(clean)}' {problem}; choose another name.")
    return clean


def check_class_name(name: object) -> str:
    """A class name: the rules of every name, plus the two kinds of folder an imgrec dataset
    skips (one named like an image file, macOS's __MACOSX), which would lose the class."""
    clean = check_name(name, "class name")
    suffix = Path(clean).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        raise StudioError(
            f"The class name '{shown(clean)}' ends in '{suffix}', so imgrec would take its "
            "folder for an image; choose a name without that ending."
        )
    if clean.casefold() == "__macosx":
        raise StudioError("The class name '__MACOSX' is a folder imgrec skips; choose another.")
    return clean


def class_or_problem(name: str) -> tuple[str | None, str | None]:
    """(the checked class name, None), or (None, the sentence `check_class_name` raises): for
    imports, which report a bad class name per file instead of stopping."""
    try:
        return check_class_name(name), None
    except StudioError as exc:
        return None, exc.message


def segment_ok(name: object) -> bool:
    """Whether `name` may be looked up as one path segment under data/: no separator, no
    control character, not hidden, not '.' or '..'. Looser than the rules for new names (no
    length limit): folders and files people copied into data/ themselves are still found."""
    return (
        isinstance(name, str)
        and bool(name)
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and UNSAFE_CHARACTER.search(name) is None
    )


def check_file_name(name: object) -> str:
    """A stored image's name as the page sends it back, nothing sanitised (a name that
    would need it cannot be one of ours, so it is simply not found: 404)."""
    if not segment_ok(name):
        raise StudioError(f"There is no image named '{shown(name)}' in this project.", 404)
    return name  # type: ignore[return-value]


def is_junk(name: str) -> bool:
    """Files that operating systems leave in folders and zips (.DS_Store, Thumbs.db, macOS's
    __MACOSX resource forks): skipped without a word, since nobody meant them as photos."""
    return name.startswith(".") or name.casefold() in _JUNK_FILES


def sanitise_file_name(raw: str, fallback: str = "image") -> str:
    """An uploaded file's name made safe to store: only the last path part (either slash),
    controls and leading dots or spaces dropped, the extension lowercased, at most
    MAX_FILE_NAME characters (the extension kept)."""
    base = re.split(r"[/\\]", str(raw))[-1]
    base = unicodedata.normalize("NFC", UNSAFE_CHARACTER.sub("", base)).strip()
    stem, dot, ext = base.rpartition(".")
    if not dot or len(ext) > 9 or not ext.isalnum():  # no extension: "noext", "a.b c"
        stem, ext = base, ""
    else:
        ext = "." + ext.lower()
    stem = stem.lstrip(". ").rstrip() or fallback  # ".hidden.jpg" -> "hidden.jpg"
    stem = stem[: MAX_FILE_NAME - len(ext)]
    while len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES - 20:  # room for "-123"
        stem = stem[:-1]
    return (stem or fallback) + ext


def with_extension(name: str, ext: str, same: frozenset[str] = frozenset()) -> str:
    """`name` with the extension of its real format: a known image extension that disagrees
    is replaced (a PNG named x.jpg becomes x.png), an extension in `same` kept (.jpeg for a
    JPEG), any other ending kept and `ext` added (holiday.v2 -> holiday.v2.jpg)."""
    stem, old = os.path.splitext(name)
    if old == ext or old in same:
        return name
    if old in IMAGE_EXTENSIONS:
        return stem + ext
    return name + ext


def numbered(name: str) -> Iterator[str]:
    """`name`, then name-2, name-3, ... before the extension: the names to try in turn."""
    yield name
    stem, ext = os.path.splitext(name)
    n = 2
    while True:
        yield f"{stem}-{n}{ext}"
        n += 1


def unique_name(folder: Path, name: str) -> str:
    """The first of `numbered(name)` not taken in `folder` (the caller holds the project's
    lock, so nobody takes it meanwhile)."""
    return next(c for c in numbered(name) if not os.path.lexists(folder / c))


def name_order(name: str) -> tuple[str, str]:
    """How names are listed: case-insensitively, ties broken by the exact name."""
    return (name.casefold(), name)


def slug(name: str) -> str:
    """A project id from its display name: lowercase ASCII letters, digits and '-' ("Mes
    Chats!" -> "mes-chats"); "project" when nothing ASCII is left (a name in Chinese)."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = _SLUG_JUNK.sub("-", ascii_text.lower()).strip("-")[:40].strip("-")
    return text or "project"


def is_project_id(pid: object) -> bool:
    """Whether `pid` has the shape of a project id (so it is a safe folder name)."""
    return isinstance(pid, str) and _ID.fullmatch(pid) is not None


def inside(root: Path, path: Path) -> Path:
    """`path` if, resolved, it is exactly where its name says under `root`: no '..' climbing
    out and no symbolic link on the way (not even one pointing back inside), else a 404
    StudioError. Every path built from a name goes through this."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise StudioError("That path is outside this project's images; reload the page.", 404)
    expected = os.path.normpath(os.path.join(os.path.realpath(root), rel))
    if os.path.realpath(path) != expected:
        raise StudioError("That path is outside this project's images; reload the page.", 404)
    return path
