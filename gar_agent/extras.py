"""How to install an optional extra, said the way this copy of gar-agent was installed.

A checkout installed with `pip install -e .` (or run from PYTHONPATH) adds an extra with
`pip install -e '.[view]'`; an installed wheel has no `.` to point at and needs
`pip install 'gar-agent[view]'`.
"""

from __future__ import annotations

import json
from importlib import metadata

DISTRIBUTION = "gar-agent"


def is_editable() -> bool:
    """Whether this package runs from a source checkout (an editable install, or not installed at all)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return True  # imported from a checkout on PYTHONPATH
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")  # PEP 610, written by pip
    except (OSError, ValueError):
        return False
    return bool(direct.get("dir_info", {}).get("editable"))


def install_command(extra: str) -> str:
    """The pip command that adds `extra` to this installation."""
    return f"pip install -e '.[{extra}]'" if is_editable() else f"pip install '{DISTRIBUTION}[{extra}]'"
