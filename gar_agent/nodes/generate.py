"""Generate (Stage 1): K boxes with descriptions, and K sound classes with confidences.

Reads: settings (sources, protocol, max_repairs), image, audio. Writes: generate (the calls, parsed
answers, repairs, how boxes were paired with sounds), sources (one record per sound: initial box,
description, audio class and confidence), error.

How is the protocol's (`gar_agent.protocols`): `gar` names the sounds first and asks for "box i for
sound i"; `reference` asks for boxes first, then the sounds, and pairs them by list order.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from gar_agent import protocols
from gar_agent.nodes.context import GarContext
from gar_agent.state import RunState


def generate(state: RunState, runtime: Runtime[GarContext]) -> dict:
    """Boxes and sound classes for the K sources, as the run's protocol asks for them."""
    return protocols.protocol(state.settings.protocol).generate(state, runtime.context)
