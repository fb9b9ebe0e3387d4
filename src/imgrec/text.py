"""Names from outside (class names, file names, paths) made safe to show and to hand on.

Class names come from folder names or a CSV someone sent, file names from anywhere. Shown raw,
such a name can drive the terminal (ESC starts CSI and OSC sequences: colours, cursor moves,
OSC 8 hyperlinks, window titles; BEL rings; CR overwrites the line), reorder what is read
(U+202E makes "gpj.exe" read "exe.jpg"), or, in a CSV opened by a spreadsheet, run as a
formula (`=HYPERLINK(...)`, OWASP's "CSV injection"). Each function here neutralises one
of these for one destination; none needs anything above the standard library, so every
layer can use them.
"""

from __future__ import annotations

import json
import re
from typing import Any

# What changes a terminal instead of being shown: C0 and C1 controls and DEL, the bidi
# controls (marks, embeddings, overrides, isolates), the line and paragraph separators, and
# lone surrogates (the undecodable bytes of a file name, which cannot even be encoded).
_UNSAFE = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
UNSAFE_CHARACTER = re.compile(f"[{_UNSAFE}]")  # controls, bidi overrides, lone surrogates
_UNSAFE_IN_LINES = re.compile(f"(?![\t\n])[{_UNSAFE}]")

# A spreadsheet reads a cell starting with one of these as a formula (OWASP's list). The
# quotes before them are part of the rule, so that escaping can be undone exactly.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED_FORMULA = re.compile(r"'+[=+\-@\t\r]")

# What json.dumps(ensure_ascii=False) leaves raw although a terminal acts on it (it already
# escapes C0 controls): DEL, C1 controls, bidi controls, separators and lone surrogates.
_UNSAFE_IN_JSON = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


# What a model file may not hold in any string (bundle/metadata.py): C0/C1 controls but tab and
# newlines, and lone surrogates (JSON allows "\ud800"; printing it raises). A class name with
# one is refused when the data is loaded, before hours of training make a file that no
# command would then open.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_CLASS_NAME = 256


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name of a model file, or None when it can."""
    if not name.strip():
        return "is blank"
    if len(name) > MAX_CLASS_NAME:
        return f"is {len(name):,} characters long (at most {MAX_CLASS_NAME})"
    if CONTROL_CHARACTERS.search(name):
        return "holds control characters"
    return None


def _visible(match: re.Match[str]) -> str:
    r"""The escape that shows an unsafe character instead of obeying it: \x1b, \u202e; a
    surrogate from an undecodable file-name byte shows that byte (\xff)."""
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape of byte 0x80..0xff
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, lines: bool = False) -> str:
    r"""`text` as a terminal may show it: controls, bidi overrides and the like become visible
    escapes (ESC -> \x1b, U+202E -> \u202e); letters of any script stay as they are. With
    `lines`, newlines and tabs are kept (for multi-line documents such as a model card)."""
    pattern = _UNSAFE_IN_LINES if lines else UNSAFE_CHARACTER
    return pattern.sub(_visible, str(text))


def shown(value: object, limit: int = 80) -> str:
    """A value from outside (a file name, a label, a CSV header) as an error message quotes it:
    one line, its unsafe characters shown as escapes, at most `limit` characters."""
    text = printable(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def csv_cell(value: str) -> str:
    """A text cell for a CSV that people open in a spreadsheet: one that would start a formula
    (=, +, -, @, tab, CR, after any quotes) gets a leading quote, as OWASP recommends.
    Numbers are not text cells: pass them formatted, not through this."""
    return f"'{value}" if _FORMULA.match(value) else value


def csv_value(cell: str) -> str:
    """The text `csv_cell` was given: its one added quote removed (cells it left alone come
    back unchanged, so files written before the quoting read the same)."""
    return cell[1:] if _ESCAPED_FORMULA.match(cell) else cell


def json_text(document: Any, **options: Any) -> str:
    r"""`json.dumps(document, ensure_ascii=False)` with what a terminal would act on written as
    JSON \u escapes (\u202e): the same JSON value, so readers get the exact names back, but safe to
    print (json.dumps escapes C0 controls, not C1, bidi or lone surrogates)."""
    raw = json.dumps(document, ensure_ascii=False, **options)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", raw)
