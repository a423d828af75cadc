"""Turn a finished run (its streamed steps and final state) into a Trace."""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict

from gar_agent.media import Media
from gar_agent.prompts import PromptSet
from gar_agent.result import RunOutcome, Step
from gar_agent.spec import RunSpec
from gar_agent.state import ModelCall, SourceRecord, Usage
from gar_agent.topology import Topology
from gar_agent.trace.schema import Fork, GraphInfo, InputFile, MediaRef, Trace, TraceCall, TraceStep
from gar_agent.trace.steps import classify_update
from gar_agent.version import __version__

_GRAPH_INFO: dict[tuple[str, str], GraphInfo] = {}


def graph_info(topology: Topology) -> GraphInfo:
    """Name, file hash, nodes and edges (subgraphs expanded) of a topology (drawn once per file version)."""
    key = (str(topology.path), topology.sha256)
    if key not in _GRAPH_INFO:
        _GRAPH_INFO[key] = _draw(topology)
    return _GRAPH_INFO[key]


def _draw(topology: Topology) -> GraphInfo:
    drawn = topology.compile().get_graph(xray=True)
    return GraphInfo(
        name=topology.name,
        path=str(topology.path),
        sha256=topology.sha256,
        nodes=list(drawn.nodes),
        edges=[(e.source, e.target, bool(e.conditional)) for e in drawn.edges],
    )


def _source_written(step: Step):
    """The source record a step wrote, if any."""
    return step.update.get("source") or (step.update.get("sources") or [None])[0]


def trace_steps(steps: list[Step], media: Media, start_index: int = 0) -> list[TraceStep]:
    """Trace steps from streamed steps: the calls each made (the calls channel), what it wrote, its pass."""
    refs = media.hashes
    passes: dict[tuple[str, int | None], int] = defaultdict(int)
    # a branch's source, from the steps in it that wrote a record (a node that wrote nothing names none)
    branch_source = {
        s.namespace: r.index for s in steps if s.namespace and isinstance(r := _source_written(s), SourceRecord)
    }
    out: list[TraceStep] = []
    for step in steps:
        if step.node == "localize" and not step.namespace:
            continue  # the branch as a whole; its inner steps are recorded one by one
        source: int | None = None
        calls: list[ModelCall] = list(step.update.get("calls") or [])
        record = _source_written(step)
        if step.node != "generate" and isinstance(record, SourceRecord):
            source = record.index
        elif step.namespace:
            source = branch_source.get(step.namespace)
        passes[(step.node, source)] += 1
        usage = sum((c.usage for c in calls), Usage())
        out.append(
            TraceStep(
                index=start_index + len(out),
                node=step.node,
                source=source,
                pass_index=passes[(step.node, source)],
                namespace=list(step.namespace),
                calls=[TraceCall(**c.model_dump(), media_refs={k: refs[k] for k in c.media}) for c in calls],
                update=classify_update(step.update, source),
                usage=usage,
                elapsed_s=step.elapsed_s,
            )
        )
    return out


def input_files(media: Media) -> dict[str, InputFile]:
    """The inputs as they were on disk."""
    img, aud = media.image_info, media.audio_info
    return {
        "image": InputFile(path=img.path, sha256=img.sha256, size=_size(img.path), width=img.width, height=img.height),
        "audio": InputFile(path=aud.path, sha256=aud.sha256, size=_size(aud.path), duration_s=aud.original_duration_s),
    }


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def build_trace(
    outcome: RunOutcome,
    media: Media,
    topology: Topology,
    prompts: PromptSet,
    *,
    backend: str = "",
    parent: str | None = None,
    fork: Fork | None = None,
    prefix: list[TraceStep] | None = None,
    inputs: dict[str, InputFile] | None = None,
    spec: RunSpec | None = None,
) -> Trace:
    """The trace of a finished run (`prefix`: steps inherited from a forked parent)."""
    prefix = prefix or []
    return Trace(
        run_id=outcome.thread_id,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__,
        parent=parent,
        fork=fork,
        backend=backend,
        spec=spec,
        graph=graph_info(topology),
        prompts_dir=str(prompts.directory),
        prompts=prompts.hashes(),
        settings=outcome.state.settings,
        inputs=inputs or input_files(media),
        media={
            "image": MediaRef(sha256=media.hashes["image"], mime_type=media.image_mime),
            "audio": MediaRef(sha256=media.hashes["audio"], mime_type="audio/wav"),
        },
        notices=list(media.notices),
        steps=[*prefix, *trace_steps(outcome.steps, media, len(prefix))],
        final_state=outcome.state,
        result=outcome.result,
        wall_s=outcome.wall_s,
    )
