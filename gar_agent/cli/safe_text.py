"""Untrusted strings on the terminal: shown as the text they are, never read as markup or escapes.

Model answers, trace fields, eval folders and file names reach the screen. Read as Rich markup, an
audio class `violin[/]` raised MarkupError (and `[bold]` restyled the rest of a line); written raw,
an answer's `ESC]0;title BEL` retitled the terminal and `ESC[2J` cleared it. Every such string goes
through `safe` (a Text, which Rich never parses as markup) with its control characters made visible.
"""

from __future__ import annotations

import re

from rich.text import Text

# What a terminal acts on rather than shows: C0 and C1 controls (ESC, BEL, CR, backspace, ...), DEL,
# lone surrogates (which also make stdout's encoder raise), the line/paragraph separators, and the
# bidirectional overrides and isolates that reorder what follows them on screen.
_HIDDEN = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069"
_ANY = re.compile(f"[{_HIDDEN}]")
_ONE_LINE = re.compile(f"[{_HIDDEN}\n\t]")  # a table cell or a title: a newline or tab would break the layout too


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, one_line: bool = False) -> str:
    """`value` as text with every control character written as its escape (ESC -> `\\x1b`).

    Newlines and tabs stay unless `one_line`; everything else printable is kept as it is.
    """
    return (_ONE_LINE if one_line else _ANY).sub(_escape, str(value))


def cut(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, and when cut, how long it was."""
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"


def safe(value: object, style: str = "", one_line: bool = False) -> Text:
    """`value` as a Rich Text: no markup is parsed and no control character reaches the terminal."""
    return Text(visible(value, one_line), style=style)
