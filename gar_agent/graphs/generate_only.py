"""Generate alone, the "MLLM answers directly" baseline: each final box is Generate's box.

    START -> generate -> END

No model call follows Generate: no Analyze, no Gate, no Refine.
"""

from langgraph.graph import END, START, StateGraph

from gar_agent.nodes import GarContext, GarGraph, generate
from gar_agent.state import RunState


def build() -> GarGraph:
    """The whole run: Generate's two calls, and that is the answer."""
    run = StateGraph(RunState, context_schema=GarContext)
    run.add_node("generate", generate)
    run.add_edge(START, "generate")
    run.add_edge("generate", END)
    return run


graph = build().compile()
