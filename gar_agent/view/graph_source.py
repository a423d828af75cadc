"""The run page's "graph source" panel: the graph file a run recorded, as text, and how it differs from ours.

A trace (schema 3) records its graph's source text in its run spec (an evaluation's traces: once, in
the folder's spec.json). The viewer shows it to be read, never imports or runs it (the browser
puts it in as text); when the shipped graph of the same name has other contents, the unified diff
from the recorded file to the shipped one is shown too, so a reader sees what the run ran that we
do not ship.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from gar_agent.registry import GRAPHS
from gar_agent.trace.schema import Trace
from gar_agent.trace.spec_file import folder_spec

MAX_SHOWN = 500_000  # characters of source (and of diff) sent to the page; a real graph file is a few KB


def _cut(text: str) -> tuple[str, bool]:
    return (text[:MAX_SHOWN], True) if len(text) > MAX_SHOWN else (text, False)


def _shipped_file(name: str) -> Path | None:
    """The shipped graph file named `name` (a name of the registry, never a path the trace gives)."""
    if name not in GRAPHS.names():
        return None
    found = GRAPHS.find(name)
    return found if isinstance(found, Path) and found.is_file() else None


def graph_source_document(trace: Trace, trace_path: Path) -> dict:
    """What the panel shows: the recorded name, sha256 and source, and the shipped file's diff when it differs."""
    spec = trace.spec
    if spec is not None and spec.is_slim:  # an evaluation's trace: the texts are in the folder's spec.json
        spec = folder_spec(trace_path, spec) or spec
    doc: dict = {"name": trace.graph.name, "sha256": trace.graph.sha256, "source": None, "shipped": None}
    if spec is None or spec.graph.source is None:
        # trace.schema_version is today's once read: an older file is told by its missing spec
        doc["missing"] = "this run recorded no graph source (" + (
            "a trace older than schema 3)" if spec is None else "an evaluation folder without its spec.json)"
        )
        return doc
    recorded = spec.graph.source
    doc["name"], doc["sha256"] = spec.graph.name, spec.graph.sha256
    doc["source"], doc["source_cut"] = _cut(recorded)
    shipped = _shipped_file(spec.graph.name)
    if shipped is None:
        return doc
    try:
        ours = shipped.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return doc
    doc["shipped"] = {"name": spec.graph.name, "file": f"gar_agent/graphs/{shipped.name}", "same": ours == recorded}
    if ours != recorded:
        diff = "".join(
            difflib.unified_diff(
                recorded.splitlines(keepends=True),
                ours.splitlines(keepends=True),
                fromfile=f"recorded {spec.graph.name} ({spec.graph.sha256[:12]})",
                tofile=f"shipped gar_agent/graphs/{shipped.name}",
            )
        )
        doc["diff"], doc["diff_cut"] = _cut(diff)
    return doc
