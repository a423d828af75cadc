"""`gar prompts ...`: prompt sets (importing the authors' prompts for --protocol reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gar_agent.cli.common import console, fail
from gar_agent.protocols.importer import PromptImportError, import_prompts

prompts_app = typer.Typer(help="Prompt sets.", no_args_is_help=True, rich_markup_mode=None)


@prompts_app.callback()
def _prompts() -> None:
    """Prompt sets."""  # keeps `import` a subcommand while it is the only one


@prompts_app.command("import")
def import_command(
    code_dir: Annotated[Path, typer.Argument(help="The `code/` folder of your GAR-SSL clone (at bc85ec0).")],
    out: Annotated[Path, typer.Option(help="Where the prompt sets go: OUT/<benchmark>/.")] = Path("authors-prompts"),
) -> None:
    """Convert the authors' prompts and system messages into one prompt set per benchmark (read, never run)."""
    try:
        folders = import_prompts(code_dir, out)
    except PromptImportError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"cannot write {out}: {e.strerror or e}; choose a writable folder") from None
    for folder in folders:
        console.print(f"wrote {folder}")
    console.print(f"use: gar eval ... --protocol reference --prompts {out}")
