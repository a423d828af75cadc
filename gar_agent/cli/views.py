"""Rich views of a run's steps and result: what each node asked, got, parsed and decided."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gar_agent.result import STATUS_TEXT, RunResult
from gar_agent.state import GenerateRecord, ModelCall, SourceRecord

CLIP = 600  # characters of prompts/answers shown inline; the trace keeps them whole


def _clip(text: str, limit: int = CLIP) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f" … (+{len(text) - limit} chars)"


def call_view(call: ModelCall, show_prompt: bool = True) -> Group:
    """A model call: template, sampling, prompt, answers, usage."""
    head = Text(f"{call.template}  ", style="bold")
    head.append(
        f"[{'+'.join(call.media) or 'text'}] T={call.temperature:g} top_p={call.top_p:g} n={call.n}  "
        f"{call.usage.model_calls} call(s), {call.usage.input_tokens} in / {call.usage.output_tokens} out tok, "
        f"{call.usage.wall_s:.2f}s",
        style="dim",
    )
    parts: list = [head]
    if show_prompt:
        parts.append(Text("asked: ", style="cyan").append(_clip(call.prompt, 300), style="default"))
    if call.error:
        parts.append(Text(f"model error: {call.error}", style="bold red"))
    for a in call.answers[:1] if call.n > 1 else call.answers:
        label = "answer: " if call.n == 1 else f"answer 1 of {len(call.answers)}: "
        parts.append(Text(label, style="green").append(_clip(a), style="default"))
    return Group(*parts)


def generate_view(
    record: GenerateRecord, calls: list[ModelCall], sources: list[SourceRecord], error: str | None
) -> Panel:
    """Generate: the audio call, the box call (and repairs), the sources they gave."""
    parts: list = []
    for call in calls:
        parts.append(call_view(call))
    for ans in record.audio + record.boxes:
        if ans.error:
            parts.append(Text(f"unusable answer: {ans.error}", style="yellow"))
    if sources:
        table = Table("source", "audio class", "conf", "initial box", "description", box=None, pad_edge=False)
        for s in sources:
            table.add_row(
                str(s.index), s.audio_class, f"{s.audio_confidence:.2f}", str(s.initial_box), _clip(s.description, 80)
            )
        parts.append(table)
    if error:
        parts.append(Text(error, style="bold red"))
    return Panel(Group(*parts), title="generate", title_align="left", border_style="blue")


def votes_table(src: SourceRecord, start: int = 0) -> Table:
    """The votes of a source from index `start`: av, keep, tags, anchors, or why dropped."""
    table = Table("#", "av", "keep", "role_tags", "anchor_votes", box=None, pad_edge=False)
    for v in src.votes[start:]:
        if v.parsed is None:
            table.add_row(str(v.index), "-", "-", Text(f"dropped: {v.error}", style="yellow"), "")
            continue
        p = v.parsed
        anchors = ", ".join(f"{a.anchor} {a.score:.2f}" for a in p.anchor_votes)
        table.add_row(str(v.index), f"{p.av_consistency:.2f}", str(p.keep).lower(), ", ".join(p.role_tags), anchors)
    return table


def analysis_text(src: SourceRecord) -> Text:
    """The aggregate so far."""
    a = src.analysis
    if a is None:
        return Text("no analysis", style="dim")
    anchors = ", ".join(f"{v.anchor} {v.score:.2f}" for v in a.anchor_votes[:5])
    return Text(
        f"aggregate of {a.n_parsed}/{a.n_votes} parsed: av_consistency {a.av_consistency:.3f}, keep {str(a.keep).lower()}, "
        f"role_tags [{', '.join(a.role_tags)}], anchors [{anchors}]",
        style="magenta",
    )


def analyze_view(src: SourceRecord, call: ModelCall) -> Panel:
    """One Analyze pass: its call and the votes it added."""
    new = len(call.answers)
    parts = [call_view(call), votes_table(src, len(src.votes) - new), analysis_text(src)]
    if src.error:
        parts.append(Text(src.error, style="bold red"))
    title = f"analyze · source {src.index} · votes {len(src.votes)}"
    return Panel(Group(*parts), title=title, title_align="left", border_style="magenta")


def gate_view(src: SourceRecord) -> Panel:
    """The gate's numbers against its thresholds and the decision."""
    g = src.gate
    table = Table("condition", "value", "threshold", "passes", box=None, pad_edge=False)
    table.add_row("keep (strict majority)", str(g.keep).lower(), "true", _ok(g.keep))
    table.add_row("av_consistency", f"{g.av_consistency:.3f}", f">= {g.tau_av:g}", _ok(g.av_consistency >= g.tau_av))
    table.add_row(
        "audio_confidence", f"{g.audio_confidence:.3f}", f">= {g.tau_audio:g}", _ok(g.audio_confidence >= g.tau_audio)
    )
    decision = Text("-> refine" if g.refine else "-> skip refinement (box kept)", style="bold")
    return Panel(Group(table, decision), title=f"gate · source {src.index}", title_align="left", border_style="yellow")


def _ok(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="red")


def refine_view(src: SourceRecord, call: ModelCall | None = None) -> Panel:
    """Refine: the answer, what was applied, the clamp, the box before and after."""
    r = src.refinement
    parts: list = [call_view(call)] if call else []
    if r.error:
        parts.append(Text(f"unusable answer: {r.error} (previous box kept)", style="yellow"))
    if r.parsed and r.parsed.ops:
        parts.append(Text(f"ops: {r.parsed.ops.model_dump(exclude_defaults=True)}"))
    parts.append(
        Text(
            f"applied: {r.applied}; box {r.previous_box} -> {r.box} (each side within ±{r.max_delta} px"
            + (", clamped" if r.clamped else "")
            + ")",
            style="bold",
        )
    )
    if r.refined_description:
        parts.append(Text(_clip(r.refined_description, 300), style="italic"))
    return Panel(Group(*parts), title=f"refine · source {src.index}", title_align="left", border_style="green")


def result_table(result: RunResult) -> Table:
    """The final boxes, one row per source, and what happened to each."""
    table = Table("source", "audio class", "initial box", "final box", "av", "keep", "status", title="result")
    for i, s in enumerate(result.sources):
        a = s.analysis
        table.add_row(
            str(i),
            f"{s.audio_class} ({s.audio_confidence:.2f})",
            str(s.initial_box),
            str(s.box),
            f"{a.av_consistency:.2f}" if a else "-",
            str(a.keep).lower() if a else "-",
            STATUS_TEXT[s.status],
        )
    return table


def node_view(node: str, update: dict):
    """The view of one step's update (any node, a researcher's own included); None for the branch wrapper."""
    calls = update.get("calls") or []
    if node == "generate":
        return generate_view(
            update.get("generate") or GenerateRecord(), calls, update.get("sources") or [], update.get("error")
        )
    src = update.get("source") or (update.get("sources") or [None])[0]
    if not isinstance(src, SourceRecord):
        if node == "localize" or not update:
            return None  # the per-source branch as a whole: its steps were shown one by one
        return _other_view(node, update, calls, None)
    if node == "analyze" and calls:
        return analyze_view(src, calls[-1])
    if node == "gate" and src.gate:
        return gate_view(src)
    if node == "refine" and src.refinement:
        return refine_view(src, calls[-1] if calls else None)
    return _other_view(node, update, calls, src)


def _other_view(node: str, update: dict, calls: list[ModelCall], src: SourceRecord | None) -> Panel:
    """A node this module has no special view for: its calls, what it wrote, the gate as it now stands."""
    parts: list = [call_view(c) for c in calls]
    wrote = [k for k in update if k not in ("calls", "sources")]
    parts.append(Text(f"wrote: {', '.join(wrote) or 'nothing'}", style="dim"))
    if src is not None and src.gate is not None:
        decision = "refine" if src.gate.refine else "skip refinement"
        reasons = f" ({'; '.join(src.gate.reasons)})" if src.gate.reasons else ""
        parts.append(Text(f"gate now: {decision}{reasons}", style="bold"))
    if src is not None and src.error:
        parts.append(Text(src.error, style="bold red"))
    title = node + (f" · source {src.index}" if src is not None else "")
    return Panel(Group(*parts), title=title, title_align="left", border_style="white")


def print_step(console: Console, node: str, update: dict) -> None:
    """Print one step as it completes."""
    view = node_view(node, update)
    if view is not None:
        console.print(view)
