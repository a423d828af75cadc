"""`gar data ...`: dataset preparation commands (mounted by the main CLI): make-duet, example."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gar_agent.cli.common import fail
from gar_agent.data.duet import make_duet
from gar_agent.data.example import MAX_SAMPLES, write_example
from gar_agent.eval.datasets import DatasetError
from gar_agent.eval.gt_formats import GT_FORMATS

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


@data_app.command("example")
def example_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write (frames/, audio/, the GT file, answers.json).")],
    benchmark: Annotated[
        str, typer.Option("--benchmark", help=f"Whose --gt format: {', '.join(GT_FORMATS)}.")
    ] = "vggss-single",
    samples: Annotated[int, typer.Option("--samples", min=1, max=MAX_SAMPLES, help="How many samples.")] = 6,
) -> None:
    """Write a tiny synthetic benchmark (drawn instruments, their sounds, GT, scripted answers) for gar eval run."""
    if benchmark not in GT_FORMATS:
        raise fail(f"--benchmark {benchmark!r}: use one of {', '.join(GT_FORMATS)}")
    if out.exists() and not out.is_dir():
        raise fail(f"{out} is a file: give a folder to write the example into")
    try:
        ex = write_example(out, benchmark, samples)
    except OSError as exc:
        raise fail(f"cannot write the example into {out}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {len(ex.ids)} {benchmark} samples: {ex.frames}/, {ex.audio}/, {ex.gt} (GT), {ex.answers}")
    typer.echo("the answers are SCRIPTED (no model); evaluate it with:")
    typer.echo(
        f"  gar eval run --dataset {benchmark} --frames {ex.frames} --audio {ex.audio} --gt {ex.gt} "
        f"--backend scripted:{ex.answers} --out {out / 'eval'}"
    )
