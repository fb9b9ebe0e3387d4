"""Datasets in object storage (s3://bucket/photos/, or any fsspec URL), listed without a download.

The layouts are the local loader's (data/dataset.py): one folder per class, train/ val/ test/
folders of class folders, or a CSV of path,label[,split]. Listing is one recursive listing per
prefix (S3 ListObjectsV2 pages, with sizes), never a request per object: a bucket of a million
photos lists in minutes, not hours. Images are not opened here; the shard writer
(data/shards.py) decodes each one, in worker processes, through `read_bytes`, and skips the
bad ones with their reasons.

Credentials and the endpoint come from the environment, as botocore reads them:
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE with
~/.aws/credentials; AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) for an S3-compatible server
such as MinIO or Ceph; AWS_DEFAULT_REGION. Nothing is passed on the command line, so no secret
lands in a run's config.json or in shell history.

Every failure a person can cause (a missing bucket, no or wrong credentials, an unreachable
endpoint, a prefix without images) becomes one sentence (ImgrecError). A dead endpoint is
given up on within seconds: a short connect timeout and one retry.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import csv
import io
import os
import posixpath
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from imgrec.data.dataset import (
    _FOLDER_SPLITS,
    SPLIT_ALIASES,
    _check_class_names,
    _hidden,
    _normalise_split,
    path_label_columns,
)
from imgrec.data.decode import IMAGE_EXTENSIONS, MAX_PIXELS, UnreadableImage
from imgrec.errors import ImgrecError
from imgrec.text import shown

if TYPE_CHECKING:
    from imgrec.data.shards import ShardInput

# The largest object read into memory: an uncompressed 8-bit RGB image of the decoder's pixel
# limit. Anything bigger holds more pixels than decoding would accept, so it is refused before
# a byte is downloaded (a 5 GB video named .jpg costs one HEAD request, not 5 GB).
MAX_OBJECT_BYTES: int = 3 * MAX_PIXELS

# Give up on an unreachable endpoint within seconds (botocore's defaults wait 60 s, 5 times).
S3_CONFIG: dict[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 60,
    "retries": {"max_attempts": 2, "mode": "standard"},
}
_STORAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "s3": {"config_kwargs": S3_CONFIG},
    "s3a": {"config_kwargs": S3_CONFIG},
}
_INSTALL = {"s3": "pip install 'imgrec[s3]'", "s3a": "pip install 'imgrec[s3]'"}
# A URL: a scheme of two or more characters (one letter is a Windows drive, C:/photos) and
# "://"; pathlib collapses "s3://b" to "s3:/b", so one slash is accepted and restored.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):/(/?)")
# Environment variables that choose credentials or endpoints: a change makes a new filesystem.
_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "FSSPEC_")
_LOOSE = "not inside a class folder"
_EXPECTED_LAYOUT = (
    "one folder per class (PREFIX/cats/1.jpg, PREFIX/dogs/2.jpg), train/ val/ test/ folders "
    "each holding class folders, or a CSV with columns path,label[,split]"
)

_filesystems: dict[tuple[int, str, int], Any] = {}
_filesystems_lock = threading.Lock()


@dataclass(frozen=True)
class RemoteListing:
    """What a prefix or CSV holds: the images to write as shards (sorted by label, then path),
    the classes, and the objects left out with a short reason each."""

    root: str
    inputs: list[ShardInput]
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def is_url(source: object) -> bool:
    """True for s3://, gs://, memory:// and the like; False for local paths (C:/ included)."""
    return isinstance(source, str | os.PathLike) and bool(_URL.match(os.fspath(source)))


def url_text(source: object) -> str:
    """The URL as a string, with the "//" that pathlib.Path drops put back (s3:/b -> s3://b)."""
    text = os.fspath(source)  # type: ignore[call-overload]
    return _URL.sub(lambda m: f"{m.group(1)}://", text, count=1)


def read_bytes(url: str) -> bytes:
    """The bytes of one object: the shard writer's `read` for URLs (module-level, so worker
    processes can unpickle it). UnreadableImage for an object to skip (missing, empty, too
    large); ImgrecError, which stops the writing, for credentials or an unreachable service."""
    fs, path = _filesystem_for(url)
    with storage_errors(url, missing=UnreadableImage("file not found")):
        size = fs.size(path)
        if size is not None and size > MAX_OBJECT_BYTES:
            raise UnreadableImage(_too_large(size))
        data = fs.cat_file(path)
    if not data:
        raise UnreadableImage("zero bytes")
    if len(data) > MAX_OBJECT_BYTES:  # replaced by a bigger object since the size was asked
        raise UnreadableImage(_too_large(len(data)))
    return data


def list_remote(url: str) -> RemoteListing:
    """List a class-folder prefix, a train/val/test prefix or a path,label[,split] CSV in object
    storage, without downloading an image; ImgrecError (one sentence) when it cannot be used."""
    url = url_text(url)
    fs, path = _filesystem_for(url)
    with storage_errors(url):
        if path.lower().endswith(".csv"):
            listing = _list_csv(fs, url, path)
        else:
            listing = _list_folder(fs, url.rstrip("/"), path.rstrip("/"))
    _check_usable(listing)
    return listing


def list_images(url: str) -> list[str]:
    """Every image below a prefix, at any depth and without labels (what prediction reads),
    as sorted URLs; a .csv URL gives the objects of its `path` column. Hidden files and
    folders are passed over. ImgrecError (one sentence) when nothing is there or the storage
    cannot be used."""
    url = url_text(url)
    fs, path = _filesystem_for(url)
    with storage_errors(url):
        if path.lower().endswith(".csv"):
            return _csv_paths(fs, url, path)
        prefix = path.rstrip("/") + "/"
        found = [
            name
            for name in _find(fs, path.rstrip("/"))
            if name.startswith(prefix)
            and _image(name)
            and not any(_hidden(part) for part in name[len(prefix) :].split("/"))
        ]
    if not found:
        raise ImgrecError(f"No images found below {shown(url, 160)}.")
    base = url.rstrip("/")
    return sorted(f"{base}/{name[len(prefix) :]}" for name in found)


def _csv_paths(fs: Any, url: str, path: str) -> list[str]:
    """The URLs in the `path` column of a CSV in object storage (relative to its folder, or
    full URLs), in the CSV's order, each once."""
    rows = _csv_rows(fs, url, path)
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "path" not in header:
        raise ImgrecError(f"The CSV file {shown(url, 160)} needs a header with a path column.")
    column = header.index("path")
    root = url.rsplit("/", 1)[0]
    found: dict[str, None] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) > column and row[column].strip():
            source, problem = _row_source(row[column].strip(), root, url, line)
            if problem is not None:
                where = f"Row {line} of {shown(url, 160)}"
                raise ImgrecError(f"{where} names {shown(source)}: {problem}.")
            found[source] = None
    if not found:
        raise ImgrecError(f"The CSV file {shown(url, 160)} lists no paths.")
    return list(found)


# ---- filesystems: one per (process, protocol, environment) ----------------------------------
def _filesystem_for(url: str) -> tuple[Any, str]:
    """The cached filesystem for `url`'s protocol and the path inside it (bucket/key)."""
    match = _URL.match(url)
    if not match:
        raise ImgrecError(f"{shown(url, 160)} is not a URL such as s3://bucket/photos/.")
    protocol = match.group(1).lower()
    fs = _filesystem(protocol)
    return fs, fs._strip_protocol(url)


def _filesystem(protocol: str) -> Any:
    """fsspec's filesystem for `protocol`, made once per process and credential environment.

    fsspec keeps its own instance cache, which would hand a child process (or a test that
    changed AWS_SECRET_ACCESS_KEY) a client made with the old settings, so it is bypassed."""
    key = (os.getpid(), protocol, hash(_environment()))
    with _filesystems_lock:
        fs = _filesystems.get(key)
        if fs is None:
            cls = _filesystem_class(protocol)
            options = _STORAGE_OPTIONS.get(protocol, {})
            fs = _filesystems[key] = cls(skip_instance_cache=True, **options)
        return fs


def _environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))


def _filesystem_class(protocol: str) -> type:
    """fsspec's class for `protocol`; one sentence when it is unknown or not installed."""
    import fsspec

    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError:
        install = _INSTALL.get(protocol) or _fsspec_install_hint(protocol)
        raise ImgrecError(
            f"Reading {protocol}:// URLs needs a package that is not installed; run {install}."
        ) from None
    except ValueError:
        raise ImgrecError(
            f"imgrec cannot read {shown(protocol)}:// URLs; use s3:// (pip install "
            "'imgrec[s3]'), another fsspec protocol, or a local folder."
        ) from None


def _fsspec_install_hint(protocol: str) -> str:
    """fsspec's own advice for a known protocol ("Install gcsfs to access ...")."""
    from fsspec.registry import known_implementations

    message = known_implementations.get(protocol, {}).get("err", "")
    package = re.search(r"[Ii]nstall (\S+)", message)
    return f"pip install {package.group(1)}" if package else "install its fsspec backend"


# ---- errors: what the storage service said, as one sentence ---------------------------------
_NO_CREDENTIALS = (
    "No credentials were found for {url}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
    "AWS_PROFILE) in the environment."
)
_DENIED = (
    "Access to {url} is denied for these credentials; they need permission to list and read "
    "it (s3:ListBucket and s3:GetObject)."
)
_UNREACHABLE = (
    "Cannot reach the storage service at {endpoint} for {url}; check AWS_ENDPOINT_URL and "
    "the network."
)
_SENTENCES = {
    "NoSuchBucket": "The bucket {bucket} does not exist; check the bucket name in {url}.",
    "NoCredentialsError": _NO_CREDENTIALS,
    "PartialCredentialsError": _NO_CREDENTIALS,
    "InvalidAccessKeyId": (
        "The storage service does not know the access key in AWS_ACCESS_KEY_ID (or AWS_PROFILE);"
        " check the credentials for {url}."
    ),
    "SignatureDoesNotMatch": (
        "The secret key does not match the access key; check AWS_SECRET_ACCESS_KEY for {url}."
    ),
    "ExpiredToken": "The session token in AWS_SESSION_TOKEN has expired; renew it to read {url}.",
    "AccessDenied": _DENIED,
    "AllAccessDisabled": _DENIED,
    "403": _DENIED,
    "EndpointConnectionError": _UNREACHABLE,
    "ConnectTimeoutError": _UNREACHABLE,
    "ConnectionClosedError": _UNREACHABLE,
    "ReadTimeoutError": _UNREACHABLE,
}


@contextlib.contextmanager
def storage_errors(url: str, missing: Exception | None = None) -> Iterator[None]:
    """Turn botocore's and fsspec's exceptions inside the block into one ImgrecError sentence
    (or raise `missing` for an object that does not exist, when given)."""
    try:
        yield
    except ImgrecError:
        raise
    except FileNotFoundError as exc:
        if missing is not None and _code(exc) != "NoSuchBucket":
            raise missing from None
        raise ImgrecError(_sentence(exc, url) or f"{shown(url, 160)} does not exist.") from None
    except Exception as exc:
        sentence = _sentence(exc, url)
        if sentence is None and isinstance(exc, PermissionError):
            sentence = _DENIED.format(url=shown(url, 160))
        if sentence is None and isinstance(exc, OSError | TimeoutError):
            sentence = f"Cannot read {shown(url, 160)}: {shown(exc, 200)}."
        if sentence is None:
            raise
        raise ImgrecError(sentence) from None


def _sentence(exc: BaseException, url: str) -> str | None:
    template = _SENTENCES.get(_code(exc) or "")
    if template is None:
        return None
    bucket = urlsplit(url).netloc
    return template.format(
        url=shown(url, 160), bucket=f"'{shown(bucket)}'", endpoint=_endpoint(exc, url)
    )


def _code(exc: BaseException) -> str | None:
    """The service's error code (AccessDenied, NoSuchBucket) or botocore's error class name,
    from `exc` or the exception it was translated from (s3fs keeps it as __cause__)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        if type(seen).__name__ in _SENTENCES:
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def _endpoint(exc: BaseException, url: str) -> str:
    """scheme://host:port of the service that did not answer."""
    seen: BaseException | None = exc
    while seen is not None:
        target = getattr(seen, "kwargs", {}).get("endpoint_url")
        if target:
            parts = urlsplit(str(target))
            return shown(f"{parts.scheme}://{parts.netloc}")
        seen = seen.__cause__ or seen.__context__
    return shown(os.environ.get("AWS_ENDPOINT_URL") or urlsplit(url).netloc)


def _too_large(size: int) -> str:
    return f"{size / 1e6:,.0f} MB, over the limit of {MAX_OBJECT_BYTES / 1e6:,.0f} MB per image"


# ---- folders -----------------------------------------------------------------------------
def _find(fs: Any, path: str) -> dict[str, int]:
    """Every object below `path` with its size, in one recursive listing."""
    fs.invalidate_cache(path)  # a listing made earlier in this process may be stale
    found = fs.find(path, detail=True)
    return {
        name: int(info.get("size") or 0)
        for name, info in found.items()
        if info.get("type") != "directory" and not name.endswith("/")
    }


class _Tree:
    """Object keys below a root as folders and files, so the local loader's rules apply."""

    def __init__(self, sizes: dict[tuple[str, ...], int]) -> None:
        self.sizes = sizes
        self.keys = sorted(sizes)  # a folder's keys are one run of this list
        self.dirs: dict[tuple[str, ...], set[str]] = {}
        self.files: dict[tuple[str, ...], list[str]] = {}
        for parts in sizes:
            for i in range(len(parts) - 1):
                self.dirs.setdefault(parts[:i], set()).add(parts[i])
            self.files.setdefault(parts[:-1], []).append(parts[-1])

    def visible_dirs(self, folder: tuple[str, ...]) -> list[str]:
        """Sub-folders that are not hidden and not named like image files."""
        return sorted(d for d in self.dirs.get(folder, ()) if not _hidden(d) and not _image(d))

    def image_files(self, folder: tuple[str, ...]) -> list[str]:
        return sorted(f for f in self.files.get(folder, ()) if not _hidden(f) and _image(f))

    def holds_classes(self, folder: tuple[str, ...]) -> bool:
        """A split folder holds class folders and no loose images (else it is a class)."""
        return bool(self.visible_dirs(folder)) and not self.image_files(folder)

    def walk_class(
        self, folder: tuple[str, ...], skipped: list[tuple[str, str]], root: str
    ) -> Iterator[tuple[str, ...]]:
        """Images anywhere below a class folder; a folder named like an image is skipped once,
        and hidden folders are passed over, as the local loader does."""
        depth = len(folder)
        noted: set[tuple[str, ...]] = set()
        start = bisect.bisect_left(self.keys, folder, key=lambda p: p[:depth])
        end = bisect.bisect_right(self.keys, folder, key=lambda p: p[:depth])
        for parts in self.keys[start:end]:
            between = parts[depth:-1]
            if any(_hidden(d) for d in between) or _hidden(parts[-1]):
                continue
            odd = next((i for i, d in enumerate(between) if _image(d)), None)
            if odd is not None:
                where = parts[: depth + odd + 1]
                if where not in noted:
                    noted.add(where)
                    skipped.append((_join(root, where), "a directory, not an image file"))
            elif _image(parts[-1]):
                yield parts


def _list_folder(fs: Any, url: str, path: str) -> RemoteListing:
    """Class folders, or split folders of class folders, below `path`."""
    prefix = f"{path}/"
    sizes = {
        tuple(name[len(prefix) :].split("/")): size
        for name, size in _find(fs, path).items()
        if name.startswith(prefix)
    }
    tree = _Tree(sizes)
    skipped = [(_join(url, (f,)), _LOOSE) for f in tree.image_files(())]
    found: list[tuple[tuple[str, ...], str | None]] = []
    for folder, split in _class_folders(tree, url, skipped):
        found += [(parts, split) for parts in tree.walk_class(folder, skipped, url)]
    inputs: list[tuple[str, str, str, str | None]] = []
    for parts, split in found:
        source = _join(url, parts)
        reason = _size_problem(sizes[parts])
        if reason:
            skipped.append((source, reason))
            continue
        label = parts[1] if split else parts[0]
        inputs.append((source, "/".join(parts), label, split))
    return _listing(url, inputs, skipped)


def _class_folders(
    tree: _Tree, url: str, skipped: list[tuple[str, str]]
) -> list[tuple[tuple[str, ...], str | None]]:
    """(folder, split) of every class folder: below train/ val/ test/ when the prefix holds
    split folders, else the top-level folders themselves."""
    top = tree.visible_dirs(())
    splits = [d for d in top if d.lower() in _FOLDER_SPLITS and tree.holds_classes((d,))]
    if not splits:
        return [((d,), None) for d in top]
    others = sorted(set(top) - set(splits))
    if others:
        raise ImgrecError(
            f"{shown(url, 160)} mixes split folders ({', '.join(splits)}) with other folders "
            f"({shown(', '.join(others))}); put every class folder inside train/, val/ or test/."
        )
    folders: list[tuple[tuple[str, ...], str | None]] = []
    for split in splits:
        skipped += [(_join(url, (split, f)), _LOOSE) for f in tree.image_files((split,))]
        name = SPLIT_ALIASES[split.lower()]
        folders += [((split, d), name) for d in tree.visible_dirs((split,))]
    return folders


# ---- a CSV of path,label[,split] -----------------------------------------------------------
@dataclass
class _Row:
    source: str
    label: str
    split: str | None


def _list_csv(fs: Any, url: str, path: str) -> RemoteListing:
    """The rows of a CSV in object storage; paths relative to its folder or full URLs. Every
    object named is looked up in one listing of its bucket's common prefix, not one by one."""
    root = url.rsplit("/", 1)[0]
    rows = _csv_rows(fs, url, path)
    header, col_path, col_label = path_label_columns(rows, url)  # type: ignore[arg-type]
    col_split = header.index("split") if "split" in header else None
    wanted: list[_Row] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        if not any(cells):
            continue
        source, problem = _row_source(cells[col_path], root, url, line)
        if problem:
            skipped.append((source, problem))
        elif source in seen:
            skipped.append((source, f"listed again on row {line} of the CSV"))
        elif not cells[col_label]:
            seen.add(source)
            skipped.append((source, f"no label on row {line} of the CSV"))
        else:
            seen.add(source)
            split = cells[col_split] if col_split is not None else ""
            where = f"row {line} of {shown(url, 160)}"
            split = _normalise_split(split, where=where) if split else None
            wanted.append(_Row(source, cells[col_label], split))
    return _listing(root, _existing(wanted, root, skipped), skipped)


def _csv_rows(fs: Any, url: str, path: str) -> list[list[str]]:
    """The CSV's rows: UTF-8 (a byte-order mark dropped) or UTF-16 with its byte-order mark."""
    size = fs.size(path)
    if size is not None and size > MAX_OBJECT_BYTES:
        raise ImgrecError(f"The CSV file {shown(url, 160)} is {_too_large(size)}; split it.")
    data = fs.cat_file(path)
    utf16 = data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    try:
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
        return list(csv.reader(io.StringIO(text, newline="")))
    except UnicodeDecodeError as exc:
        raise ImgrecError(
            f"Cannot read the CSV file {shown(url, 160)}: it is not "
            f"{'UTF-16' if utf16 else 'UTF-8'} text (byte {exc.start + 1}); save it as "
            "'CSV UTF-8'."
        ) from None
    except csv.Error as exc:
        raise ImgrecError(f"Cannot read the CSV file {shown(url, 160)}: {exc}.") from None


def _row_source(cell: str, root: str, url: str, line: int) -> tuple[str, str | None]:
    """The URL a CSV cell names, or (cell, reason) when it names none."""
    if not cell:
        raise ImgrecError(f"Row {line} of {shown(url, 160)} has an empty path.")
    if is_url(cell):
        return url_text(cell), None
    if cell.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", cell):
        return cell, "a local path; give a path relative to the CSV or a full URL"
    scheme, rest = root.split("://", 1)
    bucket, _, folder = rest.partition("/")
    key = posixpath.normpath(posixpath.join(folder, cell.replace("\\", "/")))
    if key == ".." or key.startswith("../"):
        return cell, "outside the bucket the CSV is in"
    return f"{scheme}://{bucket}/{key}", None


def _existing(wanted: list[_Row], root: str, skipped: list[tuple[str, str]]) -> list[tuple]:
    """The rows whose object exists with a usable size, as listing inputs; the others skipped
    with their reason. One listing per (protocol, bucket): of the prefix all its rows share."""
    groups: dict[tuple[str, str], list[_Row]] = {}
    for row in wanted:
        scheme, rest = row.source.split("://", 1)
        groups.setdefault((scheme.lower(), rest.split("/", 1)[0]), []).append(row)
    inputs = []
    for (scheme, _), rows in groups.items():
        fs = _filesystem(scheme)
        paths = {row.source: fs._strip_protocol(row.source) for row in rows}
        sizes = _find(fs, _common_folder(list(paths.values())))
        for row in rows:
            size = sizes.get(paths[row.source])
            reason = "file not found" if size is None else _size_problem(size)
            if reason:
                skipped.append((row.source, reason))
            else:
                inputs.append((row.source, _relative(row.source, root), row.label, row.split))
    return inputs


def _common_folder(paths: list[str]) -> str:
    """The deepest folder holding every path (at least the bucket)."""
    return posixpath.commonpath([p.rsplit("/", 1)[0] for p in paths])


def _relative(source: str, root: str) -> str:
    """`source` relative to the CSV's folder when it lies below it, else the URL itself."""
    prefix = f"{root}/"
    return source[len(prefix) :] if source.startswith(prefix) else source


# ---- shared --------------------------------------------------------------------------------
def _listing(
    root: str, found: list[tuple[str, str, str, str | None]], skipped: list[tuple[str, str]]
) -> RemoteListing:
    from imgrec.data.shards import ShardInput

    _check_class_names({label for _, _, label, _ in found})
    inputs = sorted(
        (ShardInput(source, path, label, split) for source, path, label, split in found),
        key=lambda i: (i.label, i.path),
    )
    return RemoteListing(root, inputs, sorted({i.label for i in inputs}), sorted(skipped))


def _check_usable(listing: RemoteListing) -> None:
    """One sentence unless the listing has images of at least two classes."""
    where = shown(listing.root, 160)
    if not listing.inputs:
        loose = [u for u, reason in listing.skipped if reason == _LOOSE]
        if loose and len(loose) == len(listing.skipped):
            n = len(loose)
            raise ImgrecError(
                f"Found {n} image{'s' if n > 1 else ''} directly in {where} but no class "
                f"folders; put each class's images in its own folder, e.g. {where}/cats/1.jpg."
            )
        if listing.skipped:
            url, reason = listing.skipped[0]
            raise ImgrecError(
                f"No usable images in {where}: all {len(listing.skipped)} were left out (for "
                f"example {shown(url, 160)}: {shown(reason)})."
            )
        raise ImgrecError(f"No images found in {where}; expected {_EXPECTED_LAYOUT}.")
    if len(listing.classes) < 2:
        raise ImgrecError(
            f"Found only one class '{shown(listing.classes[0])}' in {where}; a classifier "
            "needs at least two."
        )


def _size_problem(size: int) -> str | None:
    if size == 0:
        return "zero bytes"
    if size > MAX_OBJECT_BYTES:
        return _too_large(size)
    return None


def _image(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _join(url: str, parts: tuple[str, ...]) -> str:
    return "/".join((url, *parts))
