"""Protocols: what differs between the project's own method (`gar`) and the released code (`reference`).

Each protocol module offers the same functions, which the nodes call:
- `generate(state, ctx)`: Stage 1 (stage order, conditioning, pairing, failure rules), a generator
  that yields its requests, is sent their calls and returns the update (gar_agent/nodes/asking.py);
- `analysis_request(state, ctx, n) -> Request`, `parse_votes(answers, first, call) -> (votes, fatal)`,
  `finish_analysis(votes, cleanup) -> Analysis`: Stage 2;
- `refine(state, ctx) -> (Request, resolve)`: Stage 3, `resolve(answer) -> Refinement`.
The gate is the same rule in both.
"""

from __future__ import annotations

from types import ModuleType

from gar_agent.protocols import gar, reference

PROTOCOLS: dict[str, ModuleType] = {"gar": gar, "reference": reference}


def protocol(name: str) -> ModuleType:
    """The module implementing a protocol by name."""
    return PROTOCOLS[name]
