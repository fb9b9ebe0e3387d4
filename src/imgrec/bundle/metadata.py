"""The schema of a model file's metadata, checked once when the file is read.

A model file may come from anyone. Every reader of its metadata (`imgrec info`, load_model,
serve, the card, drift) trusts the types and ranges checked here: classes are distinct short
strings, the input size cannot ask for gigabytes, the temperature cannot turn probabilities
into NaN, and no string carries terminal control characters. Keys a reader does not know are
kept (a newer imgrec may add some) but must be plain JSON like the rest. pydantic's own error
wording never reaches a user: InvalidMetadata names the field in imgrec's words.
"""

from __future__ import annotations

import reprlib
import typing
from dataclasses import fields
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import create_model as pydantic_model

from imgrec.config import TrainConfig
from imgrec.errors import ImgrecError
from imgrec.text import CONTROL_CHARACTERS, MAX_CLASS_NAME

MAX_CLASSES = 20_000
MAX_STRING = 4_000_000  # a model card with pictures inlined stays far below
MAX_ITEMS = 100_000  # per list or object


class InvalidMetadata(ValueError):
    """One field of the metadata is wrong: `field` is its dotted path, `problem` ends the
    sentence "the metadata's FIELD ..."."""

    def __init__(self, field: str, problem: str) -> None:
        # a crafted key may hold a newline or an escape code: the sentence stays one line
        field = field.encode("unicode_escape", "backslashreplace").decode("ascii")[:100]
        super().__init__(f"'{field}' {problem}")
        self.field = field
        self.problem = problem


Finite = Annotated[float, Field(allow_inf_nan=False)]
Number = Annotated[float, Field(allow_inf_nan=True)]  # metrics may be NaN (a diverged run)
Text = Annotated[str, Field(max_length=MAX_STRING)]
ShortText = Annotated[str, Field(max_length=1_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Preprocessing(_Strict):
    input_size: Annotated[int, Field(ge=16, le=1024)]
    resize_size: Annotated[int, Field(ge=16, le=2048)]
    mean: Annotated[
        list[Annotated[Finite, Field(ge=-100, le=100)]], Field(min_length=3, max_length=3)
    ]
    std: Annotated[
        list[Annotated[Finite, Field(ge=1e-3, le=100)]], Field(min_length=3, max_length=3)
    ]

    @field_validator("resize_size")
    @classmethod
    def _resize_covers_input(cls, value: int, info) -> int:
        size = info.data.get("input_size")
        if size is not None and value < size:
            raise ValueError(f"is {value}, smaller than the input size {size}")
        return value


class Calibration(_Strict):
    temperature: Annotated[Finite, Field(ge=0.05, le=100)] = 1.0


class EpochRow(_Strict):
    """A history row as `imgrec info` and the card print it."""

    phase: ShortText | None = None
    epoch: int | Number | None = None
    val_acc: Number = 0.0
    val_loss: Number = 0.0


class Metrics(_Strict):
    best_epoch: EpochRow | None = None
    split: ShortText = "test"


class DataFacts(_Strict):
    source: Text | None = None
    fingerprint: ShortText | None = None
    train_images: Annotated[int, Field(ge=0)] | None = None
    val_images: Annotated[int, Field(ge=0)] | None = None
    class_counts: dict[str, Annotated[int, Field(ge=0)]] = {}


ClassName = Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME)]


class Metadata(_Strict):
    """The keys imgrec reads; each may be absent (load_model says which it needs)."""

    classes: Annotated[list[ClassName], Field(min_length=1, max_length=MAX_CLASSES)] = None
    model: Annotated[str, Field(min_length=1, max_length=200)] = None
    timm_name: Annotated[str, Field(max_length=200)] = None
    preprocessing: Preprocessing = None
    config: dict[str, Any] = None
    metrics: Metrics = None
    history: Annotated[list[dict[str, Any]], Field(max_length=MAX_ITEMS)] = None
    calibration: Calibration = None
    created: ShortText = None
    versions: dict[str, ShortText] = None
    data: DataFacts = None
    best_epoch: EpochRow = None
    monitor: dict[str, Any] = None
    model_card: Text = None
    model_card_text: dict[str, Any] = None

    @field_validator("classes")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a class twice")
        if any(name.strip() != name or not name.strip() for name in value):
            raise ValueError("has a class name that is blank or starts or ends with a space")
        return value

    @field_validator("config")
    @classmethod
    def _settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            _config_schema().model_validate(value)
        except ValidationError as exc:
            raise ValueError(f"has a setting {_translate(exc)}") from None
        try:
            TrainConfig.from_dict(value)
        except ImgrecError as exc:
            raise ValueError(f"holds an invalid setting ({str(exc).rstrip('.')})") from None
        return value


@cache
def _config_schema() -> type[BaseModel]:
    """TrainConfig's fields and types as a strict schema (derived, so it follows config.py)."""
    hints = typing.get_type_hints(TrainConfig)
    return pydantic_model(
        "TrainConfigSchema",
        __config__=ConfigDict(strict=True, extra="ignore", allow_inf_nan=False),
        **{f.name: (hints[f.name], None) for f in fields(TrainConfig)},
    )


def validate_metadata(metadata: dict) -> None:
    """Raise InvalidMetadata for the first field that breaks the schema; `metadata` is left
    as it is (it is what update_metadata writes back)."""
    _check_plain_json(metadata, "")
    try:
        Metadata.model_validate(metadata)
    except ValidationError as exc:
        raise _translate(exc) from None


def _check_plain_json(value: Any, where: str) -> None:
    """Every string short and free of control characters, every container bounded."""
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidMetadata(
                where or "metadata", f"holds a string of {len(value):,} characters"
            )
        if CONTROL_CHARACTERS.search(value):
            raise InvalidMetadata(where or "metadata", "holds control characters")
    elif isinstance(value, dict | list):
        if len(value) > MAX_ITEMS:
            raise InvalidMetadata(where or "metadata", f"holds {len(value):,} items")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            name = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and CONTROL_CHARACTERS.search(key):
                raise InvalidMetadata(where or "metadata", "has a key with control characters")
            _check_plain_json(item, name)


def _shown_repr() -> reprlib.Repr:
    """A repr bounded in length and depth (Python 3.11's Repr takes no keywords)."""
    shown = reprlib.Repr()
    shown.maxstring = shown.maxother = 40
    shown.maxlist = shown.maxdict = 4
    shown.maxlevel = 2
    return shown


_SHOWN = _shown_repr()

_TYPES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
}


def _translate(exc: ValidationError) -> InvalidMetadata:
    """The first of pydantic's errors, in imgrec's words."""
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "metadata"
    kind, ctx = error["type"], error.get("ctx") or {}
    shown = _SHOWN.repr(error.get("input"))
    if kind == "value_error":
        problem = str(ctx.get("error", "is invalid"))
    elif kind in _TYPES:
        problem = f"should be {_TYPES[kind]}, not {shown}"
    elif kind == "finite_number":
        problem = f"should be a finite number, not {shown}"
    elif kind in ("greater_than_equal", "greater_than"):
        problem = f"is {shown}, below the least allowed {ctx.get('ge', ctx.get('gt'))}"
    elif kind in ("less_than_equal", "less_than"):
        problem = f"is {shown}, above the most allowed {ctx.get('le', ctx.get('lt'))}"
    elif kind == "missing":
        problem = "is missing"
    elif kind in ("too_short", "string_too_short"):
        problem = "is empty or too short"
    elif kind in ("too_long", "string_too_long"):
        problem = "is too long"
    else:
        problem = f"is invalid ({shown})"
    return InvalidMetadata(field, problem)
