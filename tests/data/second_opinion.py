"""The paper's graph plus a "second opinion" before a box is kept (an example of a user's own node).

    START -> generate -> localize (one branch per source, joined into `sources`) -> END
    localize:  START -> analyze -(< N votes)-> analyze
                        analyze -(N votes)-> gate -(refine)-> refine -> END
                                             gate -(skip)--> second_opinion -(refine)-> refine
                                                             second_opinion -(agrees)---------> END

When the gate would keep a box, one more greedy vote is asked; if it says `keep: false` the source
is refined after all, and the gate's record says why.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from gar_agent.answers import parse_vote
from gar_agent.calls import Request, ask
from gar_agent.nodes import (
    GarContext,
    analyze,
    gate,
    gate_decision,
    refine,
    report,
    run_graph,
    source_values,
    votes_complete,
)
from gar_agent.prompts import template_name
from gar_agent.state import SourceOutput, SourceState


def second_opinion(state: SourceState, runtime: Runtime[GarContext]) -> dict:
    """Ask one greedy vote on a box the gate kept; refine after all if it says not to keep it."""
    ctx, src = runtime.context, state.source.model_copy(deep=True)
    template = template_name("analyze", state.settings.sources)  # the Analyze prompt, answered greedily
    prompt = ctx.prompts.render(template, **source_values(state))
    call = ask(ctx.model, ctx.media, Request("analyze", src.index, template, prompt))
    opinion, _ = parse_vote(call.answers[0]) if call.answers else (None, None)
    if opinion is not None and not opinion.keep:
        src.gate = src.gate.model_copy(update={"refine": True, "reasons": ["second opinion: keep is false"]})
    return report(src, call)  # the record, and the new call for the run's calls channel


def build_source() -> StateGraph:
    """One source: the paper's Analyze loop and Gate, with a second opinion before skipping Refine."""
    source = StateGraph(SourceState, context_schema=GarContext, output_schema=SourceOutput)
    source.add_node("analyze", analyze)
    source.add_node("gate", gate)
    source.add_node("second_opinion", second_opinion)
    source.add_node("refine", refine)
    source.add_edge(START, "analyze")
    source.add_conditional_edges("analyze", votes_complete, ["analyze", "gate", END])
    # gate_decision's "skip" (END) now leads to the second opinion, which is routed the same way.
    source.add_conditional_edges("gate", gate_decision, {"refine": "refine", END: "second_opinion"})
    source.add_conditional_edges("second_opinion", gate_decision, ["refine", END])
    source.add_edge("refine", END)
    return source


def build() -> StateGraph:
    """The whole run: Generate, then one `localize` branch per source (see `run_graph`)."""
    return run_graph(build_source())


graph = build().compile()
