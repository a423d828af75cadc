"""`gar data ...`: dataset preparation commands (mounted by the main CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gar_agent.cli.common import fail
from gar_agent.data.duet import make_duet
from gar_agent.eval.datasets import DatasetError

data_app = typer.Typer(
    help="Prepare benchmark data.", no_args_is_help=True, add_completion=False, rich_markup_mode=None
)


@data_app.callback()
def _data() -> None:
    """Prepare benchmark data."""


@data_app.command("make-duet")
def make_duet_cmd(
    vggss: Annotated[Path, typer.Option("--vggss", help="VGG-SS ground truth (vggss.json).")],
    pairs: Annotated[Path, typer.Option("--pairs", help="Duet pairs CSV: fileA,classA,fileB,classB.")],
    frames: Annotated[Path, typer.Option("--frames", help="Folder of VGGSound frames <id>.jpg.")],
    audio: Annotated[Path, typer.Option("--audio", help="Folder of VGGSound audio <id>.wav.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (frames/, audio/, vggss_duet.json).")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Stop after this many duets.")] = None,
) -> None:
    """Build VGGSound-Duet: two clips side by side (448x224), audios mixed, GT boxes placed."""
    try:
        report = make_duet(vggss, pairs, frames, audio, out, limit=limit)
    except (DatasetError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"written: {report.written} duets -> {report.gt_file}")
    typer.echo(f"skipped: {len(report.skipped)}")
    for reason, count in sorted(report.skipped_by_reason().items()):
        typer.echo(f"  {reason}: {count}")
    for did, reason in report.skipped[:5]:
        typer.echo(f"  e.g. {did}: {reason}")
