"""Where the project's editable files live: prompts/, graphs/, traces/ beside the package."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS_DIR = Path(os.environ.get("GAR_PROMPTS", ROOT / "prompts"))
GRAPHS_DIR = Path(os.environ.get("GAR_GRAPHS", ROOT / "graphs"))
TRACES_DIR = Path(os.environ.get("GAR_TRACES", "traces"))
