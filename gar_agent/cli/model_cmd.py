"""`gar model ...`: model checkpoint utilities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gar_agent.cli.common import fail

model_app = typer.Typer(help="Model checkpoint utilities.", no_args_is_help=True, rich_markup_mode=None)


@model_app.callback()
def _model() -> None:
    """Model checkpoint utilities."""  # keeps `tiny` a subcommand even while it is the only one


@model_app.command("tiny")
def tiny(
    dir: Annotated[Path, typer.Argument(help="Directory to write the checkpoint into.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory.")] = False,
) -> None:
    """Write a tiny random-weight Qwen2.5-Omni thinker checkpoint (for tests and offline runs)."""
    if dir.exists() and not dir.is_dir():
        raise fail(f"{dir} exists and is not a directory: give a new or empty directory")
    if dir.is_dir() and any(dir.iterdir()) and not force:
        raise fail(f"{dir} is not empty (use --force to write into it)")
    from gar_agent.models.tiny import build_tiny_checkpoint

    try:
        out = build_tiny_checkpoint(dir, seed=seed)
    except OSError as e:
        raise fail(f"cannot write {dir}: {e.strerror or e}; choose a writable directory") from None
    typer.echo(f"tiny Qwen2.5-Omni thinker checkpoint (seed {seed}) written to {out}")
