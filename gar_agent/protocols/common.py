"""What both protocols' Generate stages share."""

from __future__ import annotations

from gar_agent.state import GenerateRecord, ModelCall


def ended(record: GenerateRecord, calls: list[ModelCall], error: str) -> dict:
    """Generate's update when the run ends there: what was asked and answered so far, and why it ended."""
    return {"generate": record, "calls": calls, "error": error}


def model_failed(record: GenerateRecord, calls: list[ModelCall], which: str) -> dict:
    """The run ends because the model raised on one of Generate's calls (its message is the last call's)."""
    return ended(record, calls, f"generate: the model failed on the {which} call: {calls[-1].error}")
