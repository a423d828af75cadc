"""`gar view --export FILE.html RUN`: one self-contained HTML file of a run, for sharing.

The run's documents, its frame and audio (as data URIs) and the waveform are embedded in the page,
so the file opens in any browser with no server and no network.
"""

from __future__ import annotations

import base64
from pathlib import Path

from gar_agent.trace.store import atomic_write, read_trace
from gar_agent.view import media
from gar_agent.view.documents import run_document
from gar_agent.view.graph_source import graph_source_document
from gar_agent.view.index import Folder, ViewError
from gar_agent.view.page import render_page


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def export_run(run: str | Path, out: str | Path) -> Path:
    """Write the HTML file of one run (a trace file or run folder); ViewError when it cannot be read."""
    folder = Folder.open(run)
    if folder.mode != "run":
        raise ViewError(f"{run} is not one run: give a run folder or its trace.json to export")
    trace_file = folder.trace_path(".")
    # read here, not through folder.read: the served viewer hides its root in errors, a command names the file
    trace = read_trace(trace_file)
    embedded: dict[str, str | None] = {}
    for kind in ("image", "audio"):
        found = media.locate(trace, trace_file, folder.root, kind)
        embedded[kind] = _data_uri(*found) if found else None
    audio = media.locate(trace, trace_file, folder.root, "audio")
    # a run of a `gar eval` folder (OUT/traces/<id>) is exported with its sample's ground truth
    gt, sample = None, None
    if folder.root.parent.name == "traces" and (folder.root.parent.parent / "eval.json").is_file():
        evaluation = Folder(folder.root.parent.parent, "eval")
        gt = evaluation.sample_gt(f"traces/{folder.root.name}", trace)
        sample = evaluation.sample_facts(f"traces/{folder.root.name}")
    data = {
        "run": {
            **run_document(trace, ".", gt),
            "sample": sample,
            "graph_source": graph_source_document(trace, trace_file),
        },
        "media": embedded,
        "waveform": media.waveform(audio[0]) if audio else None,
    }
    path = Path(out)
    if path.parent and not path.parent.is_dir():
        raise ViewError(f"cannot write {path}: folder {path.parent} does not exist")
    atomic_write(path, render_page(data, title=f"gar run {trace.run_id}"))
    return path
