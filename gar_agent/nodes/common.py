"""Small pieces the stage nodes share: the per-source state update (and the prompt values, re-exported).

The prompt values live with the protocols (protocols/values.py), which build the prompts; they are
re-exported here because a researcher's own node imports them from the node library.
"""

from __future__ import annotations

from gar_agent.protocols.values import classes_text, frame_values, model_box, source_values
from gar_agent.state import ModelCall, SourceRecord

__all__ = ["classes_text", "frame_values", "model_box", "report", "source_values"]


def report(record: SourceRecord, *calls: ModelCall) -> dict:
    """A source node's update: the branch's record, the same record for the run's join, its new calls."""
    return {"source": record, "sources": [record], "calls": list(calls)}
