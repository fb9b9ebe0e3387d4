"""What each job kind accepts, checked before a worker starts, and the settings it trains with.

A mistake in the options (an unknown option, a negative epoch count, a preset that does not
exist) is answered at once with one sentence (422), not minutes later by a failed worker.
The worker builds its TrainConfig with `train_config` below, the same call `imgrec train`
makes from its flags, so the Train button and the command train the same model.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.studio.errors import StudioError

TRAIN_OPTIONS = ("model", "preset", "epochs", "time_limit", "augment", "image_size")
ALLOWED = {
    "train": TRAIN_OPTIONS,
    "audit": (),
    "compare": ("budget",),
    "export": ("run", "format"),
}
EXPORT_FORMATS = ("onnx", "onnx-int8")
DEFAULT_BUDGET = 300.0  # seconds of `imgrec compare` from the studio
EXPORT_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}


def check_options(kind: str, options: object, project: Path) -> dict:
    """The options of a `kind` job, checked and normalised (None values dropped, durations
    in seconds); StudioError 422 with a sentence for anything wrong."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise StudioError("options must be an object of option names and values.", 422)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(ALLOWED[kind]))
    if unknown:
        allowed = ", ".join(ALLOWED[kind]) or "none"
        raise StudioError(
            f"unknown option '{unknown[0][:40]}' for a {kind} job; it takes: {allowed}.", 422
        )
    if kind == "train":
        return _train_options(given)
    if kind == "compare":
        return {"budget": _seconds(given.get("budget", DEFAULT_BUDGET), "budget")}
    if kind == "export":
        return _export_options(given, project)
    return {}


def train_config(options: dict):
    """The TrainConfig of a train job's options, built as `imgrec train` builds it from its
    flags (imgrec.models.families.preset_config; options not given stay the preset's)."""
    from imgrec.models.families import preset_config

    return preset_config(
        options.get("preset", "default"),
        options.get("model"),
        epochs=options.get("epochs"),
        time_limit=options.get("time_limit"),
        augment=options.get("augment"),
        image_size=options.get("image_size"),
    )


def _train_options(given: dict) -> dict:
    for name in ("model", "preset", "augment"):
        if name in given and not isinstance(given[name], str):
            raise StudioError(f"{name} must be a name (text), not {given[name]!r:.40}.", 422)
    for name in ("epochs", "image_size"):
        if name in given and (isinstance(given[name], bool) or not isinstance(given[name], int)):
            raise StudioError(f"{name} must be a whole number, not {given[name]!r:.40}.", 422)
    if "time_limit" in given:
        given["time_limit"] = _seconds(given["time_limit"], "time_limit")
    try:
        _check_model(train_config(given).model)
    except ImgrecError as exc:
        raise StudioError(str(exc), 422) from None
    return given


def _check_model(name: str) -> None:
    """ImgrecError for a model name imgrec cannot build. The families and the default answer
    at once; any other name is looked up among timm's backbones (a second, once)."""
    from imgrec.models.families import EMBED_BACKBONE, get_family

    if name == EMBED_BACKBONE or get_family(name).kind != "transfer":
        return
    from imgrec.models.registry import get_spec

    get_spec(name)


def _seconds(value: object, name: str) -> float:
    """Seconds from a positive number or a duration such as '5m' or '1h30m'."""
    from imgrec.config import parse_duration

    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ImgrecError as exc:
            raise StudioError(f"{name}: {exc}", 422) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise StudioError(
            f"{name} must be a positive number of seconds (or a duration such as 5m), "
            f"not {value!r:.40}.",
            422,
        )
    return float(value)


def _export_options(given: dict, project: Path) -> dict:
    run, fmt = given.get("run"), given.get("format", "onnx")
    if fmt not in EXPORT_FORMATS:
        raise StudioError(
            f"unknown export format {fmt!r:.40}; use one of {', '.join(EXPORT_FORMATS)}.", 422
        )
    if not isinstance(run, str) or not run or run != Path(run).name or run.startswith("."):
        raise StudioError("say which run to export: options.run is the run's name.", 422)
    if not (Path(project) / "runs" / run / "model.imgrec").is_file():
        raise StudioError(
            f"run '{run[:60]}' has no trained model to export; choose a finished run.", 422
        )
    return {"run": run, "format": fmt}


def check_trainable(project: Path) -> None:
    """422 unless data/ holds at least two classes and every class at least two photos (a
    cheap count by file name: the worker's decode finds unreadable files and says so)."""
    counts = image_counts(Path(project) / "data")
    if len(counts) < 2:
        raise StudioError(
            f"a model needs at least 2 classes of photos and this project has {len(counts)}: "
            "add a class and its photos first.",
            422,
        )
    small = [name for name, n in counts.items() if n < 2]
    if small:
        raise StudioError(
            f"class '{small[0]}' has {counts[small[0]]} photo{'s' if counts[small[0]] != 1 else ''}"
            "; every class needs at least 2: add photos to it or delete it.",
            422,
        )


def image_counts(data: Path) -> dict[str, int]:
    """Image files per class folder of data/ (hidden files and folders left out, as the
    dataset loader does)."""
    from imgrec.data.decode import IMAGE_EXTENSIONS

    if not data.is_dir():
        return {}
    counts = {}
    for entry in sorted(os.scandir(data), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        n = 0
        for _, dirs, files in os.walk(entry.path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            n += sum(
                1
                for f in files
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            )
        counts[entry.name] = n
    return counts
