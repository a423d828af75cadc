"""Rich views of a run's steps and result: what each node asked, got, parsed and decided."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gar_agent.cli.safe_text import cut, safe, visible
from gar_agent.result import STATUS_TEXT, RunResult
from gar_agent.state import GateDecision, GenerateRecord, ModelCall, Refinement, SourceRecord, as_text
from gar_agent.trace.steps import GenerateUpdate, StepUpdate, live_update

CLIP = 600  # characters of prompts/answers shown inline; the trace keeps them whole
UNUSABLE_CLIP = 200  # an answer that could not be used: enough to see what the model did, not a screenful of noise
ABOVE = "«the answer above»"  # a repair prompt quotes the unusable answer the view just showed


def _clip(text: str, limit: int = CLIP) -> str:
    """Untrusted text cut to `limit` characters, control characters made visible."""
    return visible(cut(text, limit))


def call_view(call: ModelCall, show_prompt: bool = True, unusable: dict[str, str] | None = None) -> Group:
    """A model call: template, sampling, prompt, answers, usage.

    `unusable` maps an answer's text to why it could not be used: that answer is shown once, cut
    short, with the reason beside it (no separate "unusable answer" line repeats it).
    """
    unusable = unusable or {}
    head = safe(f"{call.template}  ", style="bold", one_line=True)
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
        parts.append(Text("model error: ", style="bold red").append(safe(call.error)))
    for i, a in enumerate(call.answers[:1] if call.n > 1 else call.answers):
        label = "answer" if call.n == 1 else f"answer {i + 1} of {len(call.answers)}"
        if a in unusable:
            line = Text(f"{label} (unusable: ", style="yellow").append(safe(unusable[a], one_line=True))
            line.append("): ", style="yellow").append(_clip(a, UNUSABLE_CLIP))
        else:
            line = Text(f"{label}: ", style="green").append(_clip(a), style="default")
        parts.append(line)
    return Group(*parts)


def _without_shown(call: ModelCall, shown: list[str]) -> ModelCall:
    """The call with answers already on screen replaced in its prompt (a repair quotes the answer it repairs)."""
    prompt = call.prompt
    for answer in shown:
        if len(answer.strip()) > 40:
            prompt = prompt.replace(answer.strip(), ABOVE)
    return call if prompt == call.prompt else call.model_copy(update={"prompt": prompt})


def generate_view(
    record: GenerateRecord,
    calls: Sequence[ModelCall],
    sources: list[SourceRecord],
    error: str | None,
    edited: dict[int, list[int]] | None = None,
) -> Panel:
    """Generate: the audio call, the box call (and repairs), the sources they gave.

    `edited` (a fork) maps a source to the box Generate gave it before the fork's edit replaced it.
    """
    unusable = {ans.raw: ans.error for ans in record.audio + record.boxes if ans.error}
    parts: list = []
    shown: list[str] = []
    for call in calls:
        parts.append(call_view(_without_shown(call, shown), unusable=unusable))
        shown += call.answers
    for ans in record.audio + record.boxes:  # an unusable answer no call shows (a researcher's own Generate)
        if ans.error and ans.raw not in shown:
            parts.append(
                Text("unusable answer (", style="yellow")
                .append(safe(ans.error, one_line=True))
                .append("): ", style="yellow")
                .append(_clip(ans.raw, UNUSABLE_CLIP))
            )
    edited = edited or {}
    if sources:
        table = Table("source", "audio class", "conf", "initial box", "description", box=None, pad_edge=False)
        for s in sources:
            box = Text(str(s.initial_box))
            if s.index in edited:
                box.append(f" (fork edit; Generate gave {edited[s.index]})", style="bold yellow")
            table.add_row(
                str(s.index),
                safe(s.audio_class, one_line=True),
                f"{s.audio_confidence:.2f}",
                box,
                safe(cut(as_text(s.description), 80), one_line=True),
            )
        parts.append(table)
    if error:
        parts.append(safe(error, style="bold red"))
    return Panel(Group(*parts), title="generate", title_align="left", border_style="blue")


def votes_table(src: SourceRecord, start: int = 0) -> Table:
    """The votes of a source from index `start`: av, keep, tags, anchors, or why dropped."""
    table = Table("#", "av", "keep", "role_tags", "anchor_votes", box=None, pad_edge=False)
    for v in src.votes[start:]:
        if v.parsed is None:
            table.add_row(str(v.index), "-", "-", safe(f"dropped: {v.error}", style="yellow", one_line=True), "")
            continue
        p = v.parsed
        anchors = ", ".join(f"{a.anchor} {a.score:.2f}" for a in p.anchor_votes)
        table.add_row(
            str(v.index),
            f"{p.av_consistency:.2f}",
            str(p.keep).lower(),
            safe(", ".join(p.role_tags), one_line=True),
            safe(anchors, one_line=True),
        )
    return table


def analysis_text(src: SourceRecord) -> Text:
    """The aggregate so far."""
    a = src.analysis
    if a is None:
        return Text("no analysis", style="dim")
    anchors = ", ".join(f"{v.anchor} {v.score:.2f}" for v in a.anchor_votes[:5])
    return safe(
        f"aggregate of {a.n_parsed}/{a.n_votes} parsed: av_consistency {a.av_consistency:.3f}, keep {str(a.keep).lower()}, "
        f"role_tags [{', '.join(a.role_tags)}], anchors [{anchors}]",
        style="magenta",
    )


def analyze_view(src: SourceRecord, call: ModelCall) -> Panel:
    """One Analyze pass: its call and the votes it added."""
    new = len(call.answers)
    unusable = {v.raw: v.error for v in src.votes if v.parsed is None and v.error}
    parts: list[RenderableType] = [
        call_view(call, unusable=unusable),
        votes_table(src, len(src.votes) - new),
        analysis_text(src),
    ]
    if src.error:
        parts.append(safe(src.error, style="bold red"))
    title = f"analyze · source {src.index} · votes {len(src.votes)}"
    return Panel(Group(*parts), title=title, title_align="left", border_style="magenta")


def gate_view(src: SourceRecord, g: GateDecision) -> Panel:
    """The gate's numbers (`g`, the source's gate) against its thresholds and the decision."""
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


def refine_view(src: SourceRecord, r: Refinement, call: ModelCall | None = None) -> Panel:
    """Refine (`r`, the source's refinement): the answer, what was applied, the clamp, the box before and after."""
    unusable = {r.raw: r.error} if r.raw is not None and r.error else {}
    parts: list = [call_view(call, unusable=unusable)] if call else []
    if r.error:
        shown = call is not None and r.raw is not None and r.raw in call.answers
        reason = "" if shown else f"unusable answer: {visible(r.error, one_line=True)} "
        parts.append(Text(f"{reason}(previous box kept)", style="yellow"))
    if r.parsed and r.parsed.ops:
        parts.append(safe(f"ops: {r.parsed.ops.model_dump(exclude_defaults=True)}"))
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
            safe(f"{s.audio_class} ({s.audio_confidence:.2f})", one_line=True),
            str(s.initial_box),
            str(s.box),
            f"{a.av_consistency:.2f}" if a else "-",
            str(a.keep).lower() if a else "-",
            STATUS_TEXT[s.status],
        )
    return table


def node_view(
    node: str, update: StepUpdate, calls: Sequence[ModelCall], fork_boxes: dict[int, list[int]] | None = None
):
    """The view of one step (any node, a researcher's own included): its typed update and the calls it made;
    None for the branch wrapper.

    `fork_boxes`: a fork's edited initial boxes, shown in Generate's table in place of what it gave.
    """
    if node == "generate":
        gen = update if isinstance(update, GenerateUpdate) else None
        sources = update.records()
        fork_boxes = fork_boxes or {}
        edited = {s.index: s.initial_box for s in sources if s.index in fork_boxes}
        sources = [
            s.model_copy(update={"initial_box": fork_boxes[s.index], "box": fork_boxes[s.index]})
            if s.index in fork_boxes
            else s
            for s in sources
        ]
        record = gen.generate if gen else GenerateRecord()
        return generate_view(record, calls, sources, getattr(update, "error", None), edited)
    src = update.record()
    if src is None:
        if node == "localize":
            return None  # the per-source branch as a whole: its steps were shown one by one
        return _other_view(node, update, calls, None)
    if node == "analyze" and calls:
        return analyze_view(src, calls[-1])
    if node == "gate" and src.gate:
        return gate_view(src, src.gate)
    if node == "refine" and src.refinement:
        return refine_view(src, src.refinement, calls[-1] if calls else None)
    return _other_view(node, update, calls, src)


def _other_view(node: str, update: StepUpdate, calls: Sequence[ModelCall], src: SourceRecord | None) -> Panel:
    """A node this module has no special view for: its calls, what it wrote, the gate as it now stands."""
    parts: list = [call_view(c) for c in calls]
    wrote = [k for k in update.channels() if k != "sources"]
    parts.append(safe(f"wrote: {', '.join(wrote) or 'nothing'}", style="dim"))
    if src is not None and src.gate is not None:
        decision = "refine" if src.gate.refine else "skip refinement"
        reasons = f" ({'; '.join(src.gate.reasons)})" if src.gate.reasons else ""
        parts.append(safe(f"gate now: {decision}{reasons}", style="bold"))
    if src is not None and src.error:
        parts.append(safe(src.error, style="bold red"))
    title = safe(node + (f" · source {src.index}" if src is not None else ""), one_line=True)
    return Panel(Group(*parts), title=title, title_align="left", border_style="white")


def show(console: Console, renderable, err: Console, what: str) -> None:
    """Print a view; a failure to display is one note on stderr, never a lost run (the result and
    trace are written whatever the screen can show)."""
    try:
        console.print(renderable)
    except Exception as e:  # noqa: BLE001 - any display bug: the run it shows must still be saved
        err.print(
            f"gar: note: could not display {what} ({type(e).__name__}: {visible(e, one_line=True)})", markup=False
        )


class StepPrinter:
    """The live step view: each step as it completes.

    A subgraph's own update (the per-source `localize` branch as a whole) repeats the steps inside it
    that were shown one by one, so it is skipped: a step whose node heads the namespace of steps seen
    before it.
    """

    def __init__(self, console: Console, err: Console, fork_boxes: dict[int, list[int]] | None = None) -> None:
        self.console, self.err, self.fork_boxes = console, err, fork_boxes
        self.seen: set[tuple[str, ...]] = set()

    def _wraps_shown_steps(self, node: str, namespace: tuple[str, ...]) -> bool:
        depth = len(namespace)
        return any(
            len(ns) > depth and ns[:depth] == namespace and ns[depth].split(":", 1)[0] == node for ns in self.seen
        )

    def __call__(self, step) -> None:
        namespace = tuple(step.namespace)
        if self._wraps_shown_steps(step.node, namespace):
            return
        self.seen.add(namespace)
        if not step.update:
            return  # a node that wrote nothing and asked nothing: no panel while the run goes on
        try:
            update, calls = live_update(step)
            view = node_view(step.node, update, calls, self.fork_boxes)
        except Exception as e:  # noqa: BLE001 - as in show(): a view's bug must not stop the run
            self.err.print(
                f"gar: note: could not display step {visible(step.node, one_line=True)} "
                f"({type(e).__name__}: {visible(e, one_line=True)})",
                markup=False,
            )
            return
        if view is not None:
            show(self.console, view, self.err, f"step {visible(step.node, one_line=True)}")
