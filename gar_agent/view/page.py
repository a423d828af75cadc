"""The single page of the viewer: HTML, CSS and JS inlined into one document.

The same page runs against the server's JSON API or, in an exported file, against the documents
embedded in it (`data`), so an exported run needs no server and no network.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from pathlib import Path

STATIC = Path(__file__).with_name("static")


@cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    # "</script>" or "<!--" inside the page's own script would end or break the script element
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


PLACEHOLDER = re.compile(r"\{\{TITLE\}\}|/\*\{\{CSS\}\}\*/|\{\{DATA\}\}|/\*\{\{JS\}\}\*/")


def render_page(data: dict | None = None, title: str = "gar view") -> str:
    """The page; with `data` (an exported run) the documents are embedded and no API is called.

    The template's placeholders are filled in one pass, so text from a trace that looks like a
    placeholder (a description holding `/*{{JS}}*/`) is never replaced. In the embedded JSON every
    `<` is written `\\u003c` (the same string to JSON.parse), so no data can close or open a tag.
    """
    embedded = "" if data is None else json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    values = {
        "{{TITLE}}": html.escape(title),
        "/*{{CSS}}*/": _asset("page.css"),
        "{{DATA}}": embedded,
        "/*{{JS}}*/": _script_safe(_asset("page.js")),
    }
    return PLACEHOLDER.sub(lambda m: values[m.group(0)], _asset("page.html"))
