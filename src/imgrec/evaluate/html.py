"""Building blocks of imgrec's self-contained HTML reports: figures and thumbnails as data URIs.

Reports embed every image so one file can be mailed or archived; the evaluation report and the
data audit share these helpers.
"""

from __future__ import annotations

import base64
from io import BytesIO
from pathlib import Path

from matplotlib.figure import Figure

from imgrec.data.decode import open_image

DPI = 110
THUMB_PX = 160
_THUMB_QUALITY = 80


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG in memory (no temp files, nothing left registered)."""
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    fig.clear()
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(path: str | Path, size: int = THUMB_PX) -> str | None:
    """A small JPEG data URI, or None when the file is missing or unreadable.

    Any failure only downgrades the tile to text: a bad file must not cost the report.
    """
    try:
        image = open_image(path, draft=size)  # JPEGs decode at reduced scale: much faster
        image.thumbnail((size, size))
        buffer = BytesIO()
        image.save(buffer, format="JPEG", quality=_THUMB_QUALITY)
    except Exception:
        return None
    return data_uri(buffer.getvalue(), "image/jpeg")
