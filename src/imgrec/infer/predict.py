"""Prediction over many files: an engine, the decoding pipeline, and streaming CSV / JSON Lines.

A BatchPredictor (`imgrec.bundle.model.open_predictor` makes one of a model.imgrec or of an
ONNX file from `imgrec export`) streams files: `predict_to_file` writes each batch's rows as
soon as it is done and flushes, so memory stays flat for any number of images and a crash
loses at most the batch in flight. With `resume=True` the files already in the output are
skipped and new rows are appended; a half-written last line (the process died mid-write) is
cut off first and its image predicted again. Complete lines are never rewritten. With a
prediction log, a batch's rows are written only once the log holds them (`_AfterLog`), so after
a crash the log has every predicted row of the output; a resumed run predicts the last few again
without logging them twice.

Output conventions (also in docs/deploy.md):
- CSV: header `path,class1,prob1,...,classK,probK,skipped`. A predicted image has an empty
  `skipped` cell; an unreadable one has empty class/prob cells and the reason in `skipped`.
- JSON Lines: `{"path": ..., "top": [{"class": ..., "probability": ...}, ...]}` per image, or
  `{"path": ..., "skipped": reason}` for an unreadable file.
- With a minimum confidence P (`--min-confidence`), CSV gains a `label` column after `path`
  and JSON Lines a `"label"` key: the top class, or `unknown` when its probability is below P.
  The top-k classes stay, so what the model guessed is still visible.
- Names are data from outside: a CSV text cell that would start a spreadsheet formula gets a
  leading quote (imgrec.text.csv_cell; --resume undoes it), and JSON escapes what a terminal
  would act on (imgrec.text.json_text).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from imgrec.data.dataset import Skipped
from imgrec.data.preprocess import Preprocessing
from imgrec.errors import ImgrecError
from imgrec.infer.batches import iter_decoded_batches, stream_probabilities
from imgrec.infer.engine import Engine
from imgrec.text import csv_cell, csv_value, json_text, printable


class Recorder(Protocol):
    """Where predictions are also recorded (the prediction log's writer is one)."""

    def record(
        self,
        filenames: Sequence[str],
        probabilities: np.ndarray,
        sources: Sequence[bytes | Path],
        *,
        signatures: np.ndarray | None = None,
        inputs: np.ndarray | None = None,
        labels: Sequence[str] | None = None,
    ) -> int: ...

    def checkpoint(self) -> int: ...

    def settled(self, mark: int, wait: bool = False) -> bool: ...

    def resumed_rows(self, last_written: str | None, written_at: float) -> set[str]: ...


STREAM_FORMATS = ("csv", "jsonl")
UNKNOWN = "unknown"  # the label of a prediction below the minimum confidence


@dataclass
class Prediction:
    """Top-k classes for one image, most likely first."""

    path: str
    classes: list[str]
    probabilities: list[float]

    @property
    def label(self) -> str:
        return self.classes[0]

    @property
    def confidence(self) -> float:
        return self.probabilities[0]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "top": [
                {"class": c, "probability": round(p, 6)}
                for c, p in zip(self.classes, self.probabilities, strict=True)
            ],
        }


def check_min_confidence(value: float | None) -> float | None:
    """`value` if it is a usable minimum confidence (0 <= P < 1, or None), else ImgrecError."""
    if value is None:
        return None
    if not 0.0 <= value < 1.0:
        raise ImgrecError(f"--min-confidence must be at least 0 and below 1, got {value:g}.")
    return float(value)


def answer_label(
    classes: Sequence[str], probs: Sequence[float], min_confidence: float | None
) -> str:
    """The top class (`classes[0]`, most likely first), or UNKNOWN when its probability is
    below `min_confidence`."""
    if min_confidence is not None and probs[0] < min_confidence:
        return UNKNOWN
    return classes[0]


def top_k_predictions(
    classes: list[str], paths: Sequence[str | Path], probs: np.ndarray, top_k: int = 1
) -> list[Prediction]:
    """One Prediction per row of `probs`, its `top_k` classes most likely first."""
    rows = top_k_rows(classes, probs, top_k)
    return [Prediction(str(p), c, q) for p, (c, q) in zip(paths, rows, strict=True)]


def top_k_rows(
    classes: list[str], probs: np.ndarray, top_k: int
) -> list[tuple[list[str], list[float]]]:
    """(class names, probabilities) of the `top_k` most likely classes of each row."""
    k = max(1, min(top_k, len(classes)))
    order = np.argsort(-probs, axis=1)[:, :k]
    return [
        ([classes[j] for j in row], [float(probs[i, j]) for j in row])
        for i, row in enumerate(order)
    ]


@dataclass
class StreamSummary:
    """What one `predict_to_file` run did."""

    predicted: int = 0
    skipped: int = 0
    already_done: int = 0  # inputs found in the output file and not predicted again
    dropped_partial_line: bool = False
    seconds: float = 0.0
    engine: str = ""

    @property
    def images_per_second(self) -> float:
        return (self.predicted + self.skipped) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BatchPredictor:
    """Classes + preprocessing + engine: everything needed to predict files."""

    classes: list[str]
    preprocessing: Preprocessing
    engine: Engine
    batch_size: int = 32
    workers: int | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)
    log: Recorder | None = None  # when set, every prediction is also recorded there

    # ---- in memory ----------------------------------------------------------------------
    def iter_probabilities(
        self,
        paths: Sequence[Path],
        min_confidence: float | None = None,
        *,
        logged: AbstractSet[str] = frozenset(),
    ) -> Iterator[tuple[list[Path], np.ndarray, list[Skipped]]]:
        """(readable paths, probabilities (n, C), skipped files) per batch, in input order;
        `min_confidence` only decides the label the prediction log records, and the paths in
        `logged` (already in the log, from an interrupted run) are not recorded again."""
        if self.log is None:
            yield from stream_probabilities(
                self.engine, paths, self.preprocessing, self.batch_size, self.workers
            )
            return
        batches = iter_decoded_batches(paths, self.preprocessing, self.batch_size, self.workers)
        for ok, images, skipped in batches:
            if not ok:
                yield [], np.zeros((0, 0), dtype=np.float32), skipped
                continue
            probs, signatures = self.engine.run(images)
            self._record(ok, probs, signatures, images, min_confidence, logged)
            yield ok, probs, skipped

    def _record(self, ok, probs, signatures, images, min_confidence, logged) -> None:
        """Queue the batch's rows in the log (its thread measures the inputs, hashes the files
        and writes them), leaving out the paths in `logged`."""
        keep = [i for i, p in enumerate(ok) if str(p) not in logged]
        if len(keep) < len(ok):
            ok, probs, images = [ok[i] for i in keep], probs[keep], images[keep]
            signatures = None if signatures is None else signatures[keep]
        labels = None
        if min_confidence is not None:
            labels = [
                UNKNOWN if row.max() < min_confidence else self.classes[int(row.argmax())]
                for row in probs
            ]
        self.log.record(
            [str(p) for p in ok], probs, ok, signatures=signatures, inputs=images, labels=labels
        )

    def predict_proba(
        self, paths: Sequence[Path], min_confidence: float | None = None
    ) -> tuple[list[Path], np.ndarray, list[Skipped]]:
        done: list[Path] = []
        chunks: list[np.ndarray] = []
        skipped: list[Skipped] = []
        for ok, probs, bad in self.iter_probabilities(paths, min_confidence):
            done += ok
            skipped += bad
            if ok:
                chunks.append(probs)
        probs = np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes)))
        return done, probs, skipped

    # ---- streaming ----------------------------------------------------------------------
    def predict_to_file(
        self,
        paths: Sequence[Path],
        output: str | Path | IO[str],
        fmt: str = "csv",
        top_k: int = 1,
        resume: bool = False,
        progress: bool = False,
        on_skip: Callable[[Skipped], None] | None = None,
        min_confidence: float | None = None,
    ) -> StreamSummary:
        """Predict `paths` into `output` (a file path, or an open text stream such as stdout)
        as CSV or JSON Lines, one flushed write per batch. See the module docstring."""
        if fmt not in STREAM_FORMATS:
            raise ImgrecError(f"streaming output is {' or '.join(STREAM_FORMATS)}, not '{fmt}'.")
        k = max(1, min(top_k, len(self.classes)))
        writer = _RowWriter(fmt, k, check_min_confidence(min_confidence))
        summary = StreamSummary(engine=self.engine.name)
        todo, stream, existing = _open_output(output, paths, resume, writer, summary)
        logged = self._resumed_rows(existing)
        start = time.perf_counter()
        try:
            if not stream.seekable() or stream.tell() == 0:
                writer.header(stream)
                stream.flush()  # before any row is logged: resumed_rows relies on it
            after_log = _AfterLog(self.log, stream)
            with image_progress(progress, len(todo)) as advance:
                batches = self.iter_probabilities(todo, writer.min_confidence, logged=logged)
                for ok, probs, bad in batches:
                    rows = top_k_rows(self.classes, probs, k) if ok else []
                    writer.batch(after_log, ok, rows, bad)
                    summary.predicted += len(ok)
                    summary.skipped += len(bad)
                    for s in bad:
                        if on_skip is not None:
                            on_skip(s)
                    advance(len(ok) + len(bad))
            after_log.finish()
        finally:
            if stream is not output:
                stream.close()
        summary.seconds = time.perf_counter() - start
        return summary

    def _resumed_rows(self, existing: _Existing | None) -> AbstractSet[str]:
        """The remaining inputs an interrupted run already logged (empty without a log)."""
        if self.log is None or existing is None:
            return frozenset()
        return self.log.resumed_rows(existing.last_predicted, existing.modified)


class _AfterLog:
    """Writes each batch's output rows only once the prediction log holds them.

    The log commits on its own thread; writing a batch out before that commit would let a
    killed process leave rows in the output that the log never got, and `--resume` trusts
    the output. So each batch waits in order for the log to settle it: usually by the next
    batch, at the latest at `finish`. Without a log, rows are written at once.
    """

    def __init__(self, log: Recorder | None, stream: IO[str]) -> None:
        self.log = log
        self.stream = stream
        self.waiting: deque[tuple[int, str]] = deque()

    def write(self, text: str) -> None:
        """Take one batch's rows (the row writer writes each batch in one call)."""
        self.waiting.append((self.log.checkpoint() if self.log is not None else 0, text))
        self._write_settled(wait=False)

    def isatty(self) -> bool:
        """Whether the rows end up on a terminal (the row writer escapes more there)."""
        return self.stream.isatty()

    def finish(self) -> None:
        self._write_settled(wait=True)

    def _write_settled(self, wait: bool) -> None:
        while self.waiting:
            mark, text = self.waiting[0]
            if self.log is not None and not self.log.settled(mark, wait) and not wait:
                return  # (waiting returns unsettled only if the log's thread died: write on)
            self.waiting.popleft()
            self.stream.write(text)  # one write per batch: a crash cuts at most the last line
            self.stream.flush()


def _open_output(
    output: str | Path | IO[str],
    paths: Sequence[Path],
    resume: bool,
    writer: _RowWriter,
    summary: StreamSummary,
) -> tuple[list[Path], IO[str], _Existing | None]:
    """The inputs still to predict, the stream to append their rows to, and what an earlier
    run left: with `resume`, the paths already in the output file are left out (and counted
    in `summary`)."""
    if not isinstance(output, str | Path):
        if resume:
            raise ImgrecError("--resume needs --out FILE (it reads what is there).")
        return list(paths), output, None
    path = Path(output)
    existing = None
    if resume and path.exists():
        existing = writer.read_existing(path)
        summary.dropped_partial_line = existing.dropped
    done = existing.done if existing is not None else set()
    todo = [p for p in paths if str(p) not in done]
    summary.already_done = len(paths) - len(todo)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return todo, path.open("a" if resume else "w", newline="", encoding="utf-8"), existing
    except OSError as exc:
        raise ImgrecError(f"cannot write {path} ({exc.strerror or exc}).") from None


@dataclass
class _Existing:
    """What an earlier run left in the output file: every path in it (predicted or skipped),
    the last predicted one, the file's modification time before resuming, and whether a
    half-written last line was cut off."""

    done: set[str]
    last_predicted: str | None
    modified: float
    dropped: bool


class _RowWriter:
    """Rows of one format; `read_existing` returns the paths an earlier run wrote."""

    def __init__(self, fmt: str, k: int, min_confidence: float | None = None) -> None:
        self.fmt = fmt
        self.min_confidence = min_confidence
        self.labelled = min_confidence is not None
        self.columns = ["path", *(["label"] if self.labelled else [])]
        self.columns += [f"{x}{i}" for i in range(1, k + 1) for x in ("class", "prob")]
        self.columns.append("skipped")

    def header(self, stream: IO[str]) -> None:
        if self.fmt == "csv":
            csv.writer(stream).writerow(self.columns)

    def batch(self, stream, ok: list[Path], rows, skipped: list[Skipped]) -> None:
        buffer = io.StringIO()  # one write per batch: a crash cuts at most the last line
        if self.fmt == "csv":
            self._csv_rows(buffer, ok, rows, skipped, _is_terminal(stream))
        else:
            self._jsonl_rows(buffer, ok, rows, skipped)
        stream.write(buffer.getvalue())

    def _csv_rows(self, buffer, ok: list[Path], rows, skipped: list[Skipped], terminal: bool):
        """CSV rows. Text cells (path, label, classes, reason) go through csv_cell, so a name
        such as =HYPERLINK(...) is not a formula when a person opens the file in a spreadsheet
        (read_existing undoes it for --resume); on a terminal control characters are also made
        visible. Probabilities are numbers and are written as they are."""
        cell = (lambda text: csv_cell(printable(text))) if terminal else csv_cell
        out = csv.writer(buffer)
        blank = [""] * (len(self.columns) - 2)
        for path, (names, probs) in zip(ok, rows, strict=True):
            pairs = [v for c, q in zip(names, probs, strict=True) for v in (cell(c), f"{q:.6f}")]
            label = answer_label(names, probs, self.min_confidence)
            out.writerow([cell(str(path)), *([cell(label)] if self.labelled else []), *pairs, ""])
        for s in skipped:
            out.writerow([cell(str(s.path)), *blank, cell(s.reason)])

    def _jsonl_rows(self, buffer, ok: list[Path], rows, skipped: list[Skipped]) -> None:
        """JSON Lines records; json_text keeps every name exact (JSON escapes only), with
        nothing a terminal would act on when the file is printed."""
        for path, (names, probs) in zip(ok, rows, strict=True):
            top = [
                {"class": c, "probability": round(q, 6)} for c, q in zip(names, probs, strict=True)
            ]
            record: dict = {"path": str(path)}
            if self.labelled:
                record["label"] = answer_label(names, probs, self.min_confidence)
            record["top"] = top
            buffer.write(json_text(record) + "\n")
        for s in skipped:
            buffer.write(json_text({"path": str(s.path), "skipped": s.reason}) + "\n")

    def read_existing(self, path: Path) -> _Existing:
        """The paths already in `path`; a last line without its newline is truncated away."""
        try:
            modified = path.stat().st_mtime
            data = path.read_bytes()
        except OSError as exc:
            raise ImgrecError(f"cannot read {path} to resume ({exc.strerror or exc}).") from None
        complete = data[: data.rfind(b"\n") + 1]
        dropped = len(complete) < len(data)
        if dropped:
            os.truncate(path, len(complete))
        text = complete.decode("utf-8", errors="replace")
        read = self._read_csv if self.fmt == "csv" else _read_jsonl
        done, last_predicted = read(path, text)
        return _Existing(done, last_predicted, modified, dropped)

    def _read_csv(self, path: Path, text: str) -> tuple[set[str], str | None]:
        """(every path, the last predicted one) of an output CSV with this writer's columns."""
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if rows and rows[0] != self.columns:
            raise ImgrecError(
                f"{path} has the columns {','.join(rows[0])[:120]}, not "
                f"{','.join(self.columns)}: resume with the same --top-k and format."
            )
        rows = [row for row in rows[1:] if row]
        predicted = [row[0] for row in rows if row[-1] == ""]  # an empty `skipped` cell
        last = csv_value(predicted[-1]) if predicted else None
        return {csv_value(row[0]) for row in rows}, last


def _read_jsonl(path: Path, text: str) -> tuple[set[str], str | None]:
    """(every path, the last predicted one) of an output in JSON Lines."""
    done: set[str] = set()
    last_predicted = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            done.add(str(record["path"]))
        except (ValueError, KeyError, TypeError):
            raise ImgrecError(
                f"{path} line {number} is not a JSON Lines record of imgrec predict; "
                "cannot resume from it."
            ) from None
        if "skipped" not in record:
            last_predicted = str(record["path"])
    return done, last_predicted


def _is_terminal(stream) -> bool:
    """Whether `stream` is a terminal (stdout not redirected), where names are shown, not kept."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class image_progress:
    """Context manager yielding advance(n): a Rich bar on stderr with img/s, when enabled;
    `transient` bars disappear when done (for steps inside a longer command)."""

    def __init__(
        self, enabled: bool, total: int, label: str = "Predicting", transient: bool = False
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.label = label
        self.transient = transient
        self.bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rate(ProgressColumn):
            """Images per second over the run so far."""

            def render(self, task) -> Text:
                elapsed = task.elapsed or 0.0
                return Text(f"{task.completed / elapsed if elapsed > 0 else 0.0:.0f} img/s")

        self.bar = Progress(
            self.label,
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=self.transient,
        )
        self.bar.start()
        task = self.bar.add_task("predict", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
