"""`gar graph show`: draw a topology offline, as text in the terminal, Mermaid text and a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gar_agent.cli.common import fail
from gar_agent.topology import GraphError, load_topology

graph_app = typer.Typer(
    help="Graph topologies: show how a graph file wires the nodes.", no_args_is_help=True, rich_markup_mode=None
)


@graph_app.callback()
def _graph() -> None:
    """Graph topologies."""  # keeps `show` a subcommand even while it is the only one


@graph_app.command("show")
def show(
    graph: Annotated[str, typer.Argument(help="A name in graphs/ or a .py graph file.")] = "gar",
    out: Annotated[Path, typer.Option(help="Where NAME.mmd and NAME.png go.")] = Path("out/graphs"),
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Print the Mermaid text instead of the listing.")] = False,
) -> None:
    """Print GRAPH's nodes and edges (subgraphs expanded) and write its Mermaid text and a PNG."""
    from gar_agent.drawing import describe, png, text

    try:
        topology = load_topology(graph)
    except GraphError as e:
        raise fail(str(e)) from None
    drawing = describe(topology)
    title = f"graph {topology.name} ({topology.path})"
    typer.echo(drawing.mermaid if mermaid else text(drawing, title))
    try:
        out.mkdir(parents=True, exist_ok=True)
        mmd = out / f"{topology.name}.mmd"
        mmd.write_text(drawing.mermaid)
        image = png(drawing, f"graph {topology.name}", out / f"{topology.name}.png")
    except OSError as e:
        raise fail(f"cannot write to {out}: {e.strerror or e}") from None
    typer.echo(f"wrote {mmd} and {image}", err=mermaid)  # keep stdout pure Mermaid with --mermaid
