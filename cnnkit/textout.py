"""Text cnnkit writes for pipes, files and people, whatever names it has to hold.

File names on Linux are bytes in no particular encoding; Python reads the
bytes that are not UTF-8 as lone surrogates ("caf\\udce9.png" for the Latin-1
name ``caf\\xe9.png``). Class names come from folder names, so they can hold
them too. Three rules follow, one per reader:

- **Pipes and files** (CSV, JSON Lines, tables on stdout, eval's CSV files)
  get the name's own bytes back: the ``cnnkit.names`` error handler writes a
  surrogate-escaped character as the byte it stands for, so a path printed by
  cnnkit opens the same file again. A character the output encoding cannot
  hold at all (a Chinese class name on a Latin-1 terminal) is written as a
  ``\\uXXXX`` escape instead of failing mid-output.
- **People** (tables, the terminal) get :func:`shown`: undecodable bytes and
  control characters as ``\\xNN`` escapes, as ``ls -b`` shows them, so a
  name can neither garble the terminal nor pass for another.
- **Spreadsheets** get :func:`csv_cell`: a text cell that starts with ``=``,
  ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'``, as
  OWASP advises against CSV injection; a spreadsheet shows it as text instead
  of running it as a formula.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

# The encode error handler for everything cnnkit writes (see the module docstring).
ERRORS = "cnnkit.names"

# U+DC80-U+DCFF: the surrogates that "surrogateescape" decoding makes of bytes 0x80-0xFF.
_ESCAPED_BYTE = range(0xDC80, 0xDD00)


def _names_errors(exc: UnicodeError) -> tuple[str | bytes, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    char = exc.object[exc.start]
    if ord(char) in _ESCAPED_BYTE:
        return bytes([ord(char) - 0xDC00]), exc.start + 1
    return codecs.backslashreplace_errors(
        UnicodeEncodeError(exc.encoding, exc.object, exc.start, exc.start + 1, exc.reason)
    )


codecs.register_error(ERRORS, _names_errors)

# C0 controls, DEL, C1 controls and every lone surrogate: what a terminal must not receive raw.
# Controls, lone surrogates (undecodable bytes), and the invisible marks that
# reorder or hide text (bidirectional overrides, isolates and marks, zero-width
# characters), with which a name could show as another name.
_UNSHOWN = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code in _ESCAPED_BYTE:
        return f"\\x{code - 0xDC00:02x}"  # the byte the name holds
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: Any) -> str:
    """``text`` for a person to read: undecodable bytes and control characters as escapes.

    >>> shown("caf\\udce9.png"), shown("a\\nb")
    ('caf\\\\xe9.png', 'a\\\\x0ab')
    """
    return _UNSHOWN.sub(_escape, str(text))


# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"): its
# first character, after any spaces (spreadsheets skip them), among these, in
# ASCII or fullwidth (some spreadsheets fold ＝ into =); "|" starts a DDE call.
_FORMULA_CHARS = frozenset("=+-@|%＝＋－＠｜％")
# Characters a cell may start with that spreadsheets skip or treat as formula starts.
_LEADING = " \t\r\n\x00\u3000"


def csv_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula; numbers and None pass unchanged.

    A text cell whose first character after spaces is ``= + - @ | %`` (or a
    fullwidth one), or that starts with a tab, CR, LF or NUL, gets a leading
    ``'``. (The CSV writers also quote every text cell, so that a ``;`` in a
    name splits no cell where ``;`` is the separator.)

    >>> csv_cell("=HYPERLINK(1)"), csv_cell("cat"), csv_cell(-0.5)
    ("'=HYPERLINK(1)", 'cat', -0.5)
    """
    if not isinstance(value, str) or not value:
        return value
    first = value.lstrip(_LEADING)[:1]
    if value[0] in "\t\r\n\x00" or first in _FORMULA_CHARS:
        return "'" + value
    return value


def csv_row(values: Any) -> list[Any]:
    """:func:`csv_cell` over a row."""
    return [csv_cell(v) for v in values]
