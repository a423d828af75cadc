"""What differs between two runs: settings, model answers, gate decisions, final boxes (IoU)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gar_agent.rules import box_iou
from gar_agent.trace.schema import Trace


@dataclass
class TraceDiff:
    """Differences, each as (what, value in A, value in B)."""

    settings: list[tuple[str, object, object]] = field(default_factory=list)
    answers: list[tuple[str, object, object]] = field(default_factory=list)
    decisions: list[tuple[str, object, object]] = field(default_factory=list)
    boxes: list[tuple[int, list | None, list | None, float | None]] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.settings or self.answers or self.decisions) and all(a == b for _, a, b, _ in self.boxes)


def _answers(trace: Trace) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for call in trace.calls():
        where = call.stage if call.source is None else f"{call.stage} source {call.source}"
        out.setdefault(where, []).extend(call.answers or ([f"<error: {call.error}>"] if call.error else []))
    return out


def diff_traces(a: Trace, b: Trace) -> TraceDiff:
    """Compare two traces of (usually) the same inputs."""
    d = TraceDiff()
    sa, sb = a.settings.model_dump(), b.settings.model_dump()
    d.settings = [(k, sa[k], sb.get(k)) for k in sa if sa[k] != sb.get(k)]
    if a.inputs != b.inputs:
        for kind in a.inputs:
            other = b.inputs.get(kind)
            if a.inputs[kind].sha256 != (other.sha256 if other is not None else None):
                d.settings.append((f"input {kind}", a.inputs[kind].path, other.path if other is not None else None))
    if a.prompts != b.prompts:
        changed = sorted(k for k in set(a.prompts) | set(b.prompts) if a.prompts.get(k) != b.prompts.get(k))
        d.settings.append(("prompt templates", ", ".join(changed), "(edited)"))
    aa, ab = _answers(a), _answers(b)
    for where in sorted(set(aa) | set(ab)):
        xa, xb = aa.get(where, []), ab.get(where, [])
        for i in range(max(len(xa), len(xb))):
            va, vb = (xa[i] if i < len(xa) else None), (xb[i] if i < len(xb) else None)
            if va != vb:
                d.answers.append((f"{where} answer {i}", va, vb))
    srcs_a = {s.index: s for s in a.final_state.sources}
    srcs_b = {s.index: s for s in b.final_state.sources}
    for i in sorted(set(srcs_a) | set(srcs_b)):
        x, y = srcs_a.get(i), srcs_b.get(i)
        for name, get in (
            ("audio_class", lambda s: s.audio_class),
            ("av_consistency", lambda s: round(s.analysis.av_consistency, 4) if s.analysis else None),
            ("keep", lambda s: s.analysis.keep if s.analysis else None),
            ("gate", lambda s: ("refine" if s.gate.refine else "skip") if s.gate else None),
            ("refinement", lambda s: s.refinement.applied if s.refinement else None),
        ):
            va, vb = (get(x) if x else None), (get(y) if y else None)
            if va != vb:
                d.decisions.append((f"source {i} {name}", va, vb))
        ba, bb = (x.box if x else None), (y.box if y else None)
        d.boxes.append((i, ba, bb, box_iou(ba, bb, size=None) if ba and bb else None))
    if a.result.error != b.result.error:
        d.decisions.append(("error", a.result.error, b.result.error))
    return d
