"""Load and render the prompt templates in `prompts/` (one file per stage and source count).

Templates are plain text with `${name}` placeholders (`string.Template`), so researchers edit them
without touching code and JSON examples need no brace escaping.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from string import Template

from gar_agent.paths import PROMPTS_DIR

STAGES = ("audio", "generate", "analyze", "refine")
EXTRA = ("repair",)


class PromptError(ValueError):
    """A template that is missing or asks for a value the stage does not provide."""


def template_name(stage: str, sources: int) -> str:
    """File name of a stage's template: `<stage>_single.txt` or `<stage>_multi.txt`."""
    if stage in EXTRA:
        return f"{stage}.txt"
    return f"{stage}_{'single' if sources == 1 else 'multi'}.txt"


class PromptSet:
    """The templates of one prompts directory, read once."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory else PROMPTS_DIR
        if not self.directory.is_dir():
            raise PromptError(f"prompts directory {self.directory} not found: pass an existing --prompts DIR")
        self._cache: dict[str, str] = {}

    def text(self, name: str) -> str:
        """The raw template text of a file in this set."""
        if name not in self._cache:
            path = self.directory / name
            if not path.is_file():
                raise PromptError(f"prompt template {path} not found: add it or use another --prompts DIR")
            self._cache[name] = path.read_text(encoding="utf-8")
        return self._cache[name]

    def render(self, name: str, **values: object) -> str:
        """Fill a template; a placeholder with no value is an error naming the file and field."""
        try:
            return Template(self.text(name)).substitute({k: str(v) for k, v in values.items()})
        except KeyError as e:
            raise PromptError(
                f"prompt {self.directory / name} uses ${{{e.args[0]}}}, which this stage does not provide; "
                f"available: {', '.join(sorted(values))}"
            ) from None
        except ValueError as e:
            raise PromptError(f"prompt {self.directory / name}: {e}") from None

    def hashes(self) -> dict[str, str]:
        """sha256 of every template file, for the trace."""
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(self.directory.glob("*.txt"))}
