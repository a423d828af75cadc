"""The protocol interface: what the nodes call, typed (a `typing.Protocol`, so a module can implement it).

A protocol is what differs between methods that share the graph: the prompts, how answers are parsed,
paired and aggregated, and the failure rules. `gar` (the project's) and `reference` (the released
scripts exactly) are modules that implement it; a researcher's may be a module or any object with
these members, registered by name (`gar_agent.registry.register_protocol`, or `--protocol module:attr`
on the command line). The gate is the same rule for every protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

from gar_agent.calls import Request
from gar_agent.context import GarContext
from gar_agent.errors import UserError
from gar_agent.state import Analysis, ModelCall, Refinement, RunState, SourceState, Vote

# The hooks, in stage order: what `check` looks for on an implementation.
HOOKS = ("generate", "analysis_request", "parse_votes", "finish_analysis", "refine")


class GarProtocol(Protocol):
    """One protocol's Stage 1, 2 and 3, as the nodes call them (every hook gets the run's context)."""

    MODEL_FRAME: bool
    """True: the prompts speak the model's own (resized) image frame and answers are mapped back to
    image pixels; False: prompts and answers are in the image's pixels (the released code)."""

    def generate(self, state: RunState, ctx: GarContext, /) -> Generator[Request, ModelCall, dict]:
        """Stage 1: yields each request, is sent its call, returns the update (sources, or an error)."""
        ...

    def analysis_request(self, state: SourceState, ctx: GarContext, n: int, /) -> Request:
        """Stage 2, one pass: the request for n sampled votes on the source's box."""
        ...

    def parse_votes(self, answers: list[str], first: int, call: ModelCall, /) -> tuple[list[Vote], str | None]:
        """Stage 2: the pass's votes (numbered from `first`), and a reason where the clip must end."""
        ...

    def finish_analysis(self, votes: list[Vote], ctx: GarContext, /) -> Analysis:
        """Stage 2: the aggregate of all the source's votes so far, which the gate and Refine read."""
        ...

    def refine(self, state: SourceState, ctx: GarContext, /) -> tuple[Request, Callable[[str], Refinement]]:
        """Stage 3: the request, and a resolver from its answer to the Refinement record."""
        ...


class ProtocolError(UserError):
    """An object given as a protocol that lacks a hook."""


def check(obj: Any, name: str) -> GarProtocol:
    """`obj`, registered as protocol `name`, as a protocol (a class is built with no arguments); one line
    naming what it lacks."""
    where = f"--protocol {name}"
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as e:
            raise ProtocolError(f"{where}: building the protocol failed ({type(e).__name__}: {e})") from None
    missing = [name for name in HOOKS if not callable(getattr(obj, name, None))]
    if not isinstance(getattr(obj, "MODEL_FRAME", None), bool):
        missing.append("MODEL_FRAME (a bool)")
    if missing:
        raise ProtocolError(
            f"{where} gives a {type(obj).__name__} without {', '.join(missing)}: a protocol has the members of "
            "gar_agent.protocols.base.GarProtocol"
        )
    return obj


if TYPE_CHECKING:  # the type checker holds the shipped implementations to the interface (modules as protocols)
    from gar_agent.protocols import gar, reference

    _gar: GarProtocol = gar
    _reference: GarProtocol = reference
