"""Where the project's editable files live.

The shipped prompt set and graphs are package data (`gar_agent/templates`, `gar_agent/graphs`), so an
installed wheel has them; in a checkout `prompts/` and `graphs/` at the top are links to them, the
folders a researcher edits. GAR_PROMPTS / GAR_GRAPHS point elsewhere; traces go to ./traces.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PROMPTS_DIR = Path(os.environ.get("GAR_PROMPTS", PACKAGE / "templates"))
GRAPHS_DIR = Path(os.environ.get("GAR_GRAPHS", PACKAGE / "graphs"))
TRACES_DIR = Path(os.environ.get("GAR_TRACES", "traces"))
