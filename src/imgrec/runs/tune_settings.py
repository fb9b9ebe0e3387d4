"""A search folder's own settings (tune.json): which data it searches on.

Light on purpose (no torch, no Optuna): `imgrec tune` reads it before its heavy imports, so
a search started without DATA, or continued on other data, is refused at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.models.families import get_family

SETTINGS_FILE = "tune.json"


def search_source(folder: Path, source: str | Path | None) -> str | Path:
    """The data of the search in `folder`: a search continues on its own data, and a new one
    records the data it was given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings_file = folder / SETTINGS_FILE
    if settings_file.exists():
        saved = json.loads(settings_file.read_text())
        source = source or saved["source"]
        if Path(source).resolve() != Path(saved["source"]):
            raise ImgrecError(f"{folder} holds a search on {saved['source']}; use another --out.")
    if source is None:
        raise ImgrecError("give the DATA to tune on.")
    settings_file.write_text(json.dumps({"source": str(Path(source).resolve())}, indent=2))
    return source


def require_tunable(backbones: Sequence[str]) -> None:
    """ImgrecError for a family the search cannot tune (it searches fine-tuning settings)."""
    for name in backbones:
        if not get_family(name).traits.tunable:
            raise ImgrecError(f"tune searches transfer-learning backbones; '{name}' is not one.")
