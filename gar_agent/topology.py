"""Load a graph topology from `graphs/NAME.py` (a name in `gar_agent.registry.GRAPHS`) or a researcher's own file.

A graph file defines `build() -> StateGraph` (uncompiled, so the runner can attach a
checkpointer). The trace records the graph's name and the sha256 of its file.

Loading a graph file runs it. Only two kinds of file are ever loaded: a file the user names
(`--graph FILE`, or `register_graph(name, path)` in their own code), and a shipped graph
(`gar_agent/graphs/*.py`). A recording (trace, eval folder)
is data from someone else: `recorded_topology` re-runs it with the shipped graph whose file has the
recorded sha256, never with the file the recording names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph

from gar_agent.errors import UserError
from gar_agent.hashing import file_sha256
from gar_agent.registry import GRAPHS


class GraphError(UserError):
    """A graph name or file that does not give a usable topology."""


@dataclass
class Topology:
    """A loaded graph file."""

    name: str
    path: Path
    sha256: str
    builder: StateGraph
    _plain: Any = field(default=None, repr=False, compare=False)

    def compile(self, checkpointer=None):
        """The runnable graph, checkpointed when a checkpointer is given.

        Without a checkpointer the compiled graph is made once and shared: an evaluation runs
        thousands of clips through it (compiled graphs are safe to invoke concurrently).
        """
        if checkpointer is not None:
            return self.builder.compile(checkpointer=checkpointer)
        if self._plain is None:
            self._plain = self.builder.compile()
        return self._plain


def available() -> list[str]:
    """Names of the graphs: the shipped files (GRAPHS_DIR), then any a researcher registered."""
    return GRAPHS.names()


def shipped_graph(sha256: str) -> Path | None:
    """The shipped graph file (gar_agent/graphs/*.py, or one registered) whose content has this sha256, if any."""
    for name in available():
        path = GRAPHS.get(name)
        if path.is_file() and file_sha256(path) == sha256:
            return path
    return None


def recorded_topology(name: str, sha256: str, graph: str | None = None, show: str = "gar trace show RUN") -> Topology:
    """The topology to re-run a recording with: `graph` when the user names one (their file, which runs),
    else the shipped graph whose file has the recorded sha256.

    The file a recording names (its graph path, or a path-like name) is never imported: a trace or an
    eval folder may come from anyone, and importing a file runs it. `show` is the command that prints
    the recorded source, for the one-line error when no shipped graph matches.
    """
    if graph:
        return load_topology(graph)
    path = shipped_graph(str(sha256))
    if path is None and name in available():
        # a shipped graph edited since (any change, a type annotation too, moves its sha256): say how
        # to see the change and run today's file, instead of sending the user to guess `--graph gar`
        raise GraphError(
            f"the recording used graph {name!r} (sha256 {str(sha256)[:16]}), and the shipped graph {name!r} has "
            f"changed since (`{show} --graph-source --graph {name}` shows how): --graph {name} runs today's, "
            "--graph FILE a graph you trust; a recording never runs a file it names"
        )
    if path is None:
        raise GraphError(
            f"the recording used graph {name!r} (sha256 {str(sha256)[:16]}), which is no shipped graph "
            f"(or a changed one): a recording never runs a file it names; pass --graph FILE to run a graph "
            f"you trust (`{show} --graph-source` prints the recorded source)"
        )
    return load_topology(str(path))


def graph_path(name_or_path: str) -> Path:
    """The file of a graph given by name (`gar`) or path (`my/graph.py`)."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".py" or candidate.parent != Path("."):
        path = candidate
    else:
        found = GRAPHS.find(name_or_path)
        if found is None:
            raise GraphError(str(GRAPHS.error(name_or_path)))
        path = Path(found)
    if not path.is_file():
        raise GraphError(f"graph file {path} not found: check the path given to --graph")
    if path.suffix != ".py":
        raise GraphError(f"graph file {path} is not a Python file: give a .py file that defines build()")
    return path


def load_topology(name_or_path: str = "gar") -> Topology:
    """Import a graph file and build its topology, with one-line errors for broken files."""
    path = graph_path(name_or_path).resolve()
    module_name = f"gar_graph_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # a .py path always gets a source loader; kept as a clear error
        raise GraphError(f"graph file {path} cannot be imported: give a .py file that defines build()")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic/typing resolve names through sys.modules
    try:
        spec.loader.exec_module(module)
        build = getattr(module, "build", None)
        if not callable(build):
            raise GraphError(f"graph file {path} defines no build() function: add `def build() -> StateGraph`")
        builder = build()
    except GraphError:
        raise
    except Exception as e:  # a broken graph file: say where and why, not a traceback
        line = getattr(e, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        raise GraphError(f"graph file {where} failed to load ({type(e).__name__}: {e})") from None
    if not isinstance(builder, StateGraph):
        raise GraphError(f"graph file {path}: build() returned {type(builder).__name__}, expected a StateGraph")
    return Topology(path.stem, path, file_sha256(path), builder)
