"""Commands loaded when they are run: `gar --help` lists them without importing their modules.

The `eval` commands import the metrics (scipy, sklearn), `track` the video stack, `replay` and
`fork` LangGraph and LangChain: seconds of imports that `gar --help` or `gar trace list` should not
pay. Each such command is named here with its module and its one-line help; its module is imported
only when the command is looked up to run (or to print its own --help).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class Lazy:
    """A command or command group by where it lives: `module:attr` is a Typer app or a command function."""

    target: str
    help: str  # what `gar --help` lists; tests/test_cli_imports.py checks it is what the command says
    mounted_help: bool = False  # a group whose help is given here (its Typer app has none of its own)


LAZY: dict[str, Lazy] = {
    "track": Lazy(
        "gar_agent.cli.track_cmd:track_command",
        "Localize the sound every --every seconds of VIDEO and follow it between; run again to resume.",
    ),
    "replay": Lazy(
        "gar_agent.cli.trace_cmd:replay",
        "Re-run a saved run with answers served from its recording (exit 3 if a call is missing).",
    ),
    "fork": Lazy(
        "gar_agent.cli.trace_cmd:fork", "Fork a saved run after Generate with edited state, and run on from there."
    ),
    "view": Lazy(
        "gar_agent.cli.view_cmd:view",
        "Serve a read-only web viewer of runs, diffs and evaluations (or export one run as HTML).",
    ),
    "model": Lazy("gar_agent.cli.model_cmd:model_app", "Model utilities (tiny test checkpoint).", True),
    "data": Lazy("gar_agent.cli.data_cmd:data_app", "Benchmark data preparation.", True),
    "trace": Lazy("gar_agent.cli.trace_cmd:trace_app", "Inspect saved runs: list, show, diff.", True),
    "graph": Lazy(
        "gar_agent.cli.graph_cmd:graph_app", "Graph topologies: show how a graph file wires the nodes.", True
    ),
    "prompts": Lazy(
        "gar_agent.cli.prompts_cmd:prompts_app",
        "Prompt sets: import the authors' prompts for --protocol reference.",
        True,
    ),
    # eval_loop_cmd adds `replay` and `compare` to eval_cmd's group
    "eval": Lazy(
        "gar_agent.cli.eval_loop_cmd:eval_app",
        "Benchmarks: gar eval run | rescore | sweep (the older --out/--rescore/--sweep spellings still work).",
    ),
}
"""Commands in the order `gar --help` lists them (after those defined in gar_agent.cli.app)."""


def load(name: str):
    """The click command of a lazy entry (its module imported now)."""
    entry = LAZY[name]
    module, attr = entry.target.split(":")
    obj = getattr(importlib.import_module(module), attr)
    if isinstance(obj, typer.Typer):
        group = typer.main.get_group(obj)
        group.name = name
        if entry.mounted_help:
            group.help = entry.help
        return group
    holder = typer.Typer(rich_markup_mode=None)  # a function: the command typer makes of it
    holder.command(name)(obj)
    return typer.main.get_command(holder)


class LazyGroup(TyperGroup):
    """The top-level `gar` group: its own commands, then the lazy ones, each loaded on first lookup."""

    def list_commands(self, ctx) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY if n not in self.commands)]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands and cmd_name in LAZY:
            self.commands[cmd_name] = load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx, formatter) -> None:
        """The command list (as TyperGroup writes it), the lazy ones from their entries: none is imported."""
        commands = [
            (name, self.commands.get(name) or TyperCommand(name, help=LAZY[name].help))
            for name in self.list_commands(ctx)
        ]
        commands = [(name, cmd) for name, cmd in commands if not cmd.hidden]
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in commands])
