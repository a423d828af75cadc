"""`gar trace list|show|diff`, `gar replay` and `gar fork`: saved runs, inspected and re-run."""

from __future__ import annotations

import difflib
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.pretty import Pretty
from rich.table import Column, Table
from rich.text import Text
from rich.tree import Tree

from gar_agent.cli.common import (
    USER_ERRORS,
    Checkpoints,
    JsonOpt,
    ModelOpt,
    TraceDir,
    console,
    err,
    fail,
    finish,
    step_printer,
)
from gar_agent.cli.rerun_text import fork_edits, parent_trace_dir, replay_changes, rerun_closing, rerun_header
from gar_agent.cli.safe_text import safe, visible
from gar_agent.cli.views import node_view
from gar_agent.cli.views import show as show_view
from gar_agent.models.backends import resolve_backend
from gar_agent.paths import TRACES_DIR
from gar_agent.prompts import PromptSet
from gar_agent.result import STATUS_TEXT, source_status
from gar_agent.spec import backend_spec
from gar_agent.trace.schema import Trace
from gar_agent.trace.spec_file import folder_spec
from gar_agent.trace.store import list_traces, read_trace, resolve_trace

# Re-running a trace needs LangGraph, LangChain and the media decoders, diffing it the metrics (scipy,
# sklearn), loading a graph LangGraph: the commands that do it import them, so `gar trace list|show`
# start fast (tests/test_cli_imports.py).
if TYPE_CHECKING:
    from gar_agent.rerun.replay import Replayed

EXIT_MISSING_CALL = 3

trace_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)

ReplayGraphOpt = Annotated[
    Optional[str],
    typer.Option(
        help="Topology to run: a shipped name or a .py file you trust (it runs). Default: the shipped graph whose "
        "sha256 the trace recorded; a file a trace names is never run."
    ),
]
RECORDED = "recorded"
FallbackOpt = Annotated[
    Optional[str],
    typer.Option(
        "--backend",
        help="Model for calls the recording lacks: a backend name (as gar run takes), or `recorded`: the backend "
        "the run spec names, built again (API key from the environment variable it names).",
    ),
]
RerunTraceDir = Annotated[
    Optional[Path],
    typer.Option(help="Where RUN is looked up (default traces/) and the new trace goes (default: beside RUN's)."),
]
RunRef = Annotated[str, typer.Argument(help="A trace file, a run folder, or a run id (prefix) in --trace-dir.")]


def _load(run: str, trace_dir: Path) -> tuple[Trace, Path]:
    try:
        path = resolve_trace(run, trace_dir)
        return read_trace(path), path
    except USER_ERRORS as e:
        raise fail(str(e)) from None


@trace_app.command("list")
def list_cmd(
    directory: Annotated[Optional[Path], typer.Argument(help="Trace directory (same as --trace-dir).")] = None,
    trace_dir: TraceDir = TRACES_DIR,
) -> None:
    """A table of saved runs."""
    directory = directory or trace_dir
    if not directory.is_dir():
        raise fail(f"trace directory {directory} does not exist: give the directory your runs used (--trace-dir DIR)")
    if (directory / "eval.json").is_file() and (directory / "traces").is_dir():
        directory = directory / "traces"  # a gar eval folder: its samples' runs are in OUT/traces
    table = Table(
        "run", "time", "image", "K", "N", "final boxes", "gate", "calls", "wall s", title=safe(directory, one_line=True)
    )
    for path, trace in list_traces(directory):
        if not isinstance(trace, Trace):
            table.add_row(safe(path.parent.name[:12], one_line=True), "", safe(trace, "red"), "", "", "", "", "", "")
            continue
        res = trace.result
        counts = Counter(STATUS_TEXT[s.status] for s in res.sources)
        table.add_row(
            safe(trace.run_id[:12] + (" (fork)" if trace.fork else " (replay)" if trace.parent else ""), one_line=True),
            safe(trace.created.replace("T", " ")[:19], one_line=True),
            safe(Path(trace.inputs["image"].path).name, one_line=True),
            str(trace.settings.sources),
            str(trace.settings.n_votes),
            " ".join(str(s.box) for s in res.sources) or safe(res.error, "red"),
            ", ".join(f"{n} {what}" for what, n in counts.items()) or "-",
            str(res.usage.model_calls),
            f"{trace.wall_s:.2f}",
        )
    console.print(table)


@trace_app.command()
def show(
    run: RunRef,
    step: Annotated[Optional[int], typer.Option(help="Show only step K (see the step numbers).")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Write an overlay per step into this directory.")] = None,
    graph_source: Annotated[
        bool,
        typer.Option(
            "--graph-source",
            help="Print the graph source the run recorded (shown, never run); with --graph, a unified diff against it.",
        ),
    ] = False,
    graph: Annotated[
        Optional[str], typer.Option(help="With --graph-source: a shipped name or .py file to diff against (read only).")
    ] = None,
    trace_dir: TraceDir = TRACES_DIR,
) -> None:
    """The run as a tree per source: Generate, the votes, the aggregate, the gate, the refinement."""
    trace, path = _load(run, trace_dir)
    if graph is not None and not graph_source:
        raise fail("--graph goes with --graph-source (the file to diff the recorded graph against)")
    if graph_source:
        return _show_graph_source(trace, path, graph)
    if step is not None:
        if not 0 <= step < len(trace.steps):
            raise fail(f"--step {step}: the run has steps 0..{len(trace.steps) - 1}")
        s = trace.steps[step]
        show_view(console, node_view(s.node, s.update, s.calls) or Pretty(s.state), err, f"step {step}")
        if png:
            _step_overlays(trace, path, png, only=step)
        return
    final = trace.final_state
    head = Tree(
        Text(f"run {visible(trace.run_id, one_line=True)}", style="bold").append(
            visible(
                f" · graph {trace.graph.name} · {trace.created} · "
                f"K={trace.settings.sources} N={trace.settings.n_votes} tau_av={trace.settings.tau_av} "
                f"tau_audio={trace.settings.tau_audio}" + (f" · parent {trace.parent}" if trace.parent else ""),
                one_line=True,
            )
        )
    )
    if trace.fork:
        head.add(safe(f"fork after {trace.fork.from_node}: {'; '.join(trace.fork.edits)}", "bold yellow"))
    head.add(
        safe(
            "steps: "
            + ", ".join(f"{s.index}:{s.node}" + ("" if s.source is None else f"[{s.source}]") for s in trace.steps)
        )
    )
    # every step that ran, a researcher's own nodes included, in step order: the run's own steps (Generate)
    # on the run, the per-source steps under their source's branch; the branches (in source order) are
    # placed where the first per-source step ran
    sources = {src.index: src for src in final.sources}
    branches: dict[int, Tree] = {}

    def add_branches() -> None:
        for index, src in sources.items():
            branches[index] = head.add(
                Text(f"source {index}", style="bold").append(
                    visible(
                        f": {src.audio_class} ({src.audio_confidence:.2f}) {src.initial_box} "
                        f"-> {src.box} · {STATUS_TEXT[source_status(src)]}",
                        one_line=True,
                    )
                )
            )

    for s in trace.steps:
        view = node_view(s.node, s.update, s.calls)
        if view is None:
            continue
        if s.source in sources and not branches:
            add_branches()
        (branches[s.source] if s.source in sources else head).add(view)
    if not branches:  # no per-source step ran: the sources still have their lines
        add_branches()
    if final.error:
        head.add(safe(final.error, "red"))
    show_view(console, head, err, "the run")
    if png:
        _step_overlays(trace, path, png)


def _show_graph_source(trace: Trace, path: Path, against: str | None) -> None:
    """Print the recorded graph source, or its unified diff against a graph file (read as text, never imported)."""
    from gar_agent.topology import GraphError, graph_path, shipped_graph

    spec = _full_spec(trace, path)  # an eval folder's trace: the texts are in the folder's spec.json
    info = trace.graph
    if spec is None or spec.graph.source is None:
        # trace.schema_version is today's once read: an older file is told by its missing spec
        why = "a trace older than schema 3" if trace.spec is None else "an eval folder's trace without its spec.json"
        raise fail(
            f"run {trace.run_id} recorded no graph source ({why}); it used graph {info.name!r} "
            f"(sha256 {info.sha256[:16]})"
        )
    recorded = spec.graph.source
    if against is None:
        shipped = shipped_graph(spec.graph.sha256)
        note = f"= shipped {shipped}" if shipped else "no shipped graph has this sha256"
        # one comment line (not wrapped to the console's width): the output is itself a graph file
        sys.stdout.write(visible(f"# recorded graph {spec.graph.name!r} sha256 {spec.graph.sha256} ({note})") + "\n")
        sys.stdout.write(visible(recorded) + ("" if recorded.endswith("\n") else "\n"))
        return
    try:
        other = graph_path(against)
        text = other.read_text(encoding="utf-8")
    except (GraphError, OSError, UnicodeDecodeError) as e:
        raise fail(f"--graph {against}: {e}") from None
    lines = difflib.unified_diff(
        recorded.splitlines(keepends=True),
        text.splitlines(keepends=True),
        fromfile=f"recorded:{spec.graph.name} ({spec.graph.sha256[:12]})",
        tofile=str(other),
    )
    diff = "".join(lines)
    sys.stdout.write(visible(diff) if diff else f"the recorded graph equals {other}\n")


def _step_overlays(trace: Trace, path: Path, folder: Path, only: int | None = None) -> None:
    """An overlay per step that has boxes (the boxes as they stand after it); `only`: that step's alone."""
    from gar_agent.overlay import save_overlay, source_label
    from gar_agent.rerun.replay import trace_media

    media = trace_media(trace, path)
    boxes: dict[int, dict] = {}
    written = 0
    for s in trace.steps:
        for rec in s.update.records():
            boxes[rec.index] = {
                "box": rec.box,
                "initial_box": rec.initial_box,
                "label": source_label(rec.index, rec.audio_class),
            }
        if only is not None and s.index != only:
            continue
        if boxes:
            save_overlay(media.image, [boxes[i] for i in sorted(boxes)], folder / f"step_{s.index:03d}_{s.node}.png")
            written += 1
    if only is not None and not written:
        console.print(visible(f"step {only} has no boxes yet (Generate gives them): no overlay written"))
        return
    console.print(visible(f"wrote {written} overlay{'s' if written != 1 else ''} to {folder}"))


@trace_app.command()
def diff(a: RunRef, b: RunRef, trace_dir: TraceDir = TRACES_DIR) -> None:
    """Settings, answers and decisions that differ, and the final boxes with their IoU."""
    from gar_agent.rerun.diff import diff_traces

    ta, _ = _load(a, trace_dir)
    tb, _ = _load(b, trace_dir)
    d = diff_traces(ta, tb)
    ida, idb = ta.run_id[:12], tb.run_id[:12]
    if ida == idb:  # one sample in two evaluation folders: its run id is the sample id in both
        ida, idb = f"A {ida}", f"B {idb}"
    for title, rows in (("settings", d.settings), ("answers", d.answers), ("decisions", d.decisions)):
        if rows:
            table = Table("what", _column(ida), _column(idb), title=title)
            for what, x, y in rows:
                table.add_row(safe(what, one_line=True), safe(_short(x), one_line=True), safe(_short(y), one_line=True))
            console.print(table)
    table = Table("source", _column(ida), _column(idb), "IoU", title="final boxes")
    for i, x, y, iou in d.boxes:
        table.add_row(str(i), str(x), str(y), "-" if iou is None else f"{iou:.3f}")
    console.print(table)
    if d.same:
        console.print("the runs agree on settings, answers, decisions and boxes")


def _column(header: str) -> Column:
    """A column headed by a trace's text (a run id is whatever the trace says)."""
    return Column(header=safe(header, one_line=True))


def _short(v, n: int = 80) -> str:
    text = "-" if v is None else str(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def _topology(trace: Trace, path: Path, graph: str | None = None):
    """The graph asked for (`--graph`, the user's own file), else the shipped graph with the recorded
    sha256; never the file the trace names (a trace is data: importing its file would run its code)."""
    from gar_agent.topology import recorded_topology

    return recorded_topology(trace.graph.name, trace.graph.sha256, graph, f"gar trace show {path}")


def _fallback(trace: Trace, backend: Optional[str], model: Optional[str]):
    """(chat model, its spec) for the calls the recording lacks: `--backend NAME`, or `recorded`: the
    backend the run spec names, built again (its key re-read from the environment variable it names)."""
    if not backend:
        return None, None
    if backend == RECORDED:
        if model:
            raise fail("--model goes with a backend name: --backend recorded uses the recorded model")
        if trace.spec is None:
            raise fail(
                f"run {trace.run_id} recorded no run spec (a trace older than schema 3): "
                "give --backend NAME (and its options) instead of recorded"
            )
        return trace.spec.build_backend(), trace.spec.backend
    chat = resolve_backend(backend, model)
    return chat, backend_spec(backend, model, chat=chat)


def _finish(done: Replayed, media, out, as_json, parent: Trace, parent_path: Path) -> None:
    """After a replay or fork: exit 3 naming a call the recording lacked, else the usual result, then
    what changed against the parent and the command that compares the two."""
    if done.model.missing:
        finish_missing(done, done.trace_path, as_json)
    if not as_json:
        console.print(f"served {done.model.served} recorded call(s), sent {done.model.forwarded} to the backend")
    try:
        finish(done.outcome.result, media, out, as_json, done.trace_path, parent.inputs.get("video"))
    finally:
        if not as_json:
            for line in rerun_closing(parent, parent_path, done.outcome.result, done.trace_path):
                console.print(visible(line), soft_wrap=True)  # a command to copy: never wrapped


def finish_missing(done: Replayed, path: Path | None, as_json: bool) -> None:
    """A replay that needed an unrecorded call: exit 3, naming it (and the partial trace, if one was written)."""
    if as_json:
        sys.stdout.write(done.outcome.result.model_dump_json(indent=2) + "\n")
    saved = f" (partial replay saved as {path})" if path is not None else ""
    raise fail(
        f"replay needs a call the recording lacks: {done.model.missing[0]}; give --backend to run it{saved}",
        EXIT_MISSING_CALL,
    )


def replay(
    run: RunRef,
    n_votes: Annotated[Optional[int], typer.Option(min=1, max=64, help="Use the first N recorded votes.")] = None,
    tau_av: Annotated[Optional[float], typer.Option(min=0.0, max=1.0)] = None,
    tau_audio: Annotated[Optional[float], typer.Option(min=0.0, max=1.0)] = None,
    graph: ReplayGraphOpt = None,
    prompts: Annotated[Optional[Path], typer.Option(help="Edited prompt templates.")] = None,
    backend: FallbackOpt = None,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option(help="Where result.json and overlay.png go.")] = Path("out/replay"),
    as_json: JsonOpt = False,
    trace_dir: RerunTraceDir = None,
    checkpoints: Checkpoints = None,
) -> None:
    """Re-run a saved run with answers served from its recording (exit 3 if a call is missing)."""
    from gar_agent.checkpoints import open_checkpointer
    from gar_agent.rerun.replay import replay as replay_run
    from gar_agent.rerun.replay import replay_model, trace_media

    trace, path = _load(run, trace_dir or TRACES_DIR)
    trace_dir = trace_dir or parent_trace_dir(trace, path)
    try:
        topology = _topology(trace, path, graph)
        if not as_json:
            changes = replay_changes(trace, n_votes=n_votes, tau_av=tau_av, tau_audio=tau_audio)
            changes += [f"graph {trace.graph.name} -> {topology.name}"] if topology.name != trace.graph.name else []
            changes += [f"prompts from {prompts}"] if prompts else []
            console.print(
                visible(rerun_header("replay", trace, path, changes), one_line=True), style="bold", soft_wrap=True
            )
        prompt_set = _prompts(trace, path, prompts)
        media = trace_media(trace, path)
        fallback, fallback_spec = _fallback(trace, backend, model)
        chat = replay_model(trace, fallback)
        done = replay_run(
            trace,
            media,
            topology,
            prompt_set,
            chat,
            trace_dir,
            checkpointer=open_checkpointer(checkpoints, trace_dir),
            on_step=step_printer(as_json),
            backend=fallback_spec,
            n_votes=n_votes,
            tau_av=tau_av,
            tau_audio=tau_audio,
        )
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    _finish(done, media, out, as_json, trace, path)


def _prompts(trace: Trace, path: Path, override: Path | None = None) -> PromptSet:
    """The prompt set a re-run uses: the one given; else the templates the run spec recorded (asked
    exactly as recorded, whatever became of the folder); else (a trace without a spec) the recorded
    folder if it is there, else the shipped set."""
    if override:
        return PromptSet(override)
    spec = _full_spec(trace, path)
    recorded_set = spec.prompts.prompt_set() if spec is not None else None
    if recorded_set is not None:
        return recorded_set
    recorded = Path(trace.prompts_dir) if trace.prompts_dir else None
    return PromptSet(recorded if recorded and recorded.is_dir() else None)


def _full_spec(trace: Trace, path: Path):
    """The trace's run spec with its texts: its own, or (an eval folder's trace) the folder's spec.json."""
    spec = trace.spec
    if spec is not None and spec.is_slim:
        spec = folder_spec(path, spec) or spec
    return spec


def _parse_box(spec: str) -> tuple[int, list[int]]:
    try:
        src, coords = spec.split("=", 1)
        box = [int(round(float(v))) for v in coords.replace(" ", "").strip("[]").split(",")]
        if len(box) != 4:
            raise ValueError
        return int(src), box
    except ValueError:
        raise fail(f"--box {spec!r}: write SOURCE=x1,y1,x2,y2, e.g. --box 0=10,20,110,220") from None


def _parse_vote(spec: str) -> tuple[int, int, str]:
    try:
        where, answer = spec.split("=", 1)
        src, idx = where.split(":")
        return int(src), int(idx), answer
    except ValueError:
        raise fail(
            f'--vote {spec!r}: write SOURCE:INDEX=ANSWER, e.g. --vote 0:2=\'{{"av_consistency": 0.1, "keep": false}}\''
        ) from None


def fork(
    run: RunRef,
    box: Annotated[
        Optional[list[str]], typer.Option(help="SOURCE=x1,y1,x2,y2: replace a source's initial box.")
    ] = None,
    vote: Annotated[
        Optional[list[str]], typer.Option(help="SOURCE:INDEX=ANSWER: replace a recorded vote's answer.")
    ] = None,
    graph: ReplayGraphOpt = None,
    backend: FallbackOpt = None,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option(help="Where result.json and overlay.png go.")] = Path("out/fork"),
    as_json: JsonOpt = False,
    trace_dir: RerunTraceDir = None,
    checkpoints: Checkpoints = None,
) -> None:
    """Fork a saved run after Generate with edited state, and run on from there."""
    from gar_agent.checkpoints import open_checkpointer
    from gar_agent.rerun.replay import MissingRecording, replay_model, trace_media
    from gar_agent.rerun.replay import fork as fork_run

    trace, path = _load(run, trace_dir or TRACES_DIR)
    trace_dir = trace_dir or parent_trace_dir(trace, path)
    boxes = dict(_parse_box(b) for b in box or [])
    votes = [_parse_vote(v) for v in vote or []]
    if not boxes and not votes:
        raise fail("gar fork needs at least one edit: --box SOURCE=x1,y1,x2,y2 or --vote SOURCE:INDEX=ANSWER")
    image = trace.final_state.image
    assert image is not None  # a Trace is refused when read if its final state lacks the frame
    for src, (x1, y1, x2, y2) in boxes.items():
        # an edited box becomes the source's box as given (Generate's are clipped into the frame): an
        # inverted, empty or outside one would be scored and drawn as nonsense
        if not (0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height):
            raise fail(
                f"--box {src}={x1},{y1},{x2},{y2}: give x1 < x2 and y1 < y2 inside the "
                f"{image.width}x{image.height} frame (pixels)"
            )
    try:
        topology = _topology(trace, path, graph)
        prompt_set = _prompts(trace, path)
        media = trace_media(trace, path)
        fallback, fallback_spec = _fallback(trace, backend, model)
        chat = replay_model(trace, fallback)
        for src, idx, answer in votes:
            chat.edit_answer("analyze", src, idx, answer)
        edits = [f"source {s} initial box -> {b}" for s, b in boxes.items()] + [
            f"source {s} vote {i} -> {a}" for s, i, a in votes
        ]
        if not as_json:
            header = rerun_header("fork", trace, path, fork_edits(trace, boxes, votes))
            console.print(visible(header, one_line=True), style="bold", soft_wrap=True)
        done = fork_run(
            trace,
            media,
            topology,
            prompt_set,
            chat,
            boxes,
            trace_dir,
            edits,
            checkpointer=open_checkpointer(checkpoints, trace_dir),
            on_step=step_printer(as_json, fork_boxes=boxes),
            backend=fallback_spec,
        )
    except (MissingRecording, *USER_ERRORS) as e:
        raise fail(str(e)) from None
    _finish(done, media, out, as_json, trace, path)
