"""The single page of the viewer: HTML, CSS and JS inlined into one document.

The same page runs against the server's JSON API or, in an exported file, against the documents
embedded in it (`data`), so an exported run needs no server and no network.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

STATIC = Path(__file__).with_name("static")


@cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    # "</script>" or "<!--" inside embedded JSON would end or break the script element
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render_page(data: dict | None = None, title: str = "gar view") -> str:
    """The page; with `data` (an exported run) the documents are embedded and no API is called."""
    embedded = "" if data is None else _script_safe(json.dumps(data, separators=(",", ":")))
    return (
        _asset("page.html")
        .replace("{{TITLE}}", title.replace("<", "&lt;"))
        .replace("/*{{CSS}}*/", _asset("page.css"))
        .replace("{{DATA}}", embedded)
        .replace("/*{{JS}}*/", _script_safe(_asset("page.js")))
    )
