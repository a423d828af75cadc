"""`gar model ...`: model checkpoint utilities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

model_app = typer.Typer(help="Model checkpoint utilities.", no_args_is_help=True)


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
        typer.echo(f"error: {dir} exists and is not a directory", err=True)
        raise typer.Exit(2)
    if dir.is_dir() and any(dir.iterdir()) and not force:
        typer.echo(f"error: {dir} is not empty (use --force to write into it)", err=True)
        raise typer.Exit(2)
    from gar_agent.models.tiny import build_tiny_checkpoint

    try:
        out = build_tiny_checkpoint(dir, seed=seed)
    except OSError as e:
        typer.echo(f"error: cannot write {dir}: {e.strerror or e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"tiny Qwen2.5-Omni thinker checkpoint (seed {seed}) written to {out}")
