"""How our nodes run under LangGraph's sync API and its async API alike, each written once.

Left to itself, LangGraph's async API runs a plain function node (and a router) in a worker
thread, one hand-over per step; with hundreds of clips on one event loop those hand-overs and the
threads' fight over the GIL cost more than the nodes. So:

- `plain_node` marks a node or router that does no I/O (Gate, the routers): it runs inline under
  both APIs;
- `model_node` makes a node that asks the model from a body written once (below).

A model node's body is a generator: it yields each `Request` it has for the model and is sent back
the `ModelCall` that came of it; what it returns is the node's update. `model_node` turns such a
body into a node with both a sync function (each request through `calls.ask`, in the node's
thread) and an async one (through `calls.aask`, awaited on the event loop). So `graph.invoke`,
replay and fork keep working unchanged, while `gar eval` with a served model runs hundreds of
clips as tasks on one loop instead of a thread each (scripts/bench_serving.py shows the difference).

A researcher's own node may stay a plain function that calls `ask`: LangGraph's async API runs it
in a worker thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from typing import Any

from langgraph._internal._runnable import RunnableCallable  # what LangGraph makes of every node
from langgraph.runtime import Runtime

from gar_agent.calls import Request, aask, ask
from gar_agent.context import GarContext
from gar_agent.protocols.script_order import Wait, script_order
from gar_agent.state import ModelCall

Asks = Generator[Request | Wait, ModelCall | str | None, dict]
"""A model node's body: yields requests, receives their calls, returns the state update."""


class _Answered:
    """How many answers of each (stage, source) the run holds: those in the node's state, then this node's.

    Each request is stamped with its count (`Request.answered`), so which answer comes next is a
    function of the state, not of what a model object served before in this process: a run re-run
    from a checkpoint asks exactly what the original run asked there.
    """

    def __init__(self, state: Any) -> None:
        calls = state.get("calls") if isinstance(state, dict) else getattr(state, "calls", None)
        self.counts: dict[tuple, int] = {}
        for call in calls or []:
            if isinstance(call, dict):  # a researcher's dict state holds what it was given
                call = ModelCall.model_validate(call)
            self.add(call)

    def add(self, call: ModelCall) -> None:
        key = (call.stage, call.source)
        self.counts[key] = self.counts.get(key, 0) + len(call.answers)

    def stamp(self, request: Request) -> Request:
        request.answered = self.counts.get((request.stage, request.source), 0)
        return request


def drive(body: Asks, ctx: GarContext, state: Any = None) -> dict:
    """Run a body to its update, each request answered by `ask` (blocking this thread).

    A `Wait` (script_order.py) blocks until the other branches release it.
    """
    answered = _Answered(state)
    try:
        request = next(body)
        while True:
            if isinstance(request, Wait):
                request = body.send(request.order.wait_sync(request.sources))
                continue
            call = ask(ctx.model, ctx.media, answered.stamp(request))
            answered.add(call)
            request = body.send(call)
    except StopIteration as end:
        return end.value
    except BaseException:
        _abort(ctx)
        raise


async def adrive(body: Asks, ctx: GarContext, state: Any = None) -> dict:
    """Run a body to its update, each request awaited through `aask` (a `Wait` awaited on the loop)."""
    try:
        if not ctx.resolved():  # loading a model or decoding a clip must not block the event loop
            await asyncio.to_thread(ctx.resolve)
        answered = _Answered(state)
        request = next(body)
        while True:
            if isinstance(request, Wait):
                request = body.send(await request.order.wait_async(request.sources))
                continue
            call = await aask(ctx.model, ctx.media, answered.stamp(request))
            answered.add(call)
            request = body.send(call)
    except StopIteration as end:
        return end.value
    except BaseException:
        _abort(ctx)
        raise


def _abort(ctx: GarContext) -> None:
    # a branch that raised never marks its analysis: the others must not wait for it
    if (order := script_order(ctx)) is not None:
        order.abort("another branch of this run failed")


class _Node(RunnableCallable):
    """A node LangGraph runs with our sync and async functions; it can still be called directly."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        assert self.func is not None  # every _Node is made with its sync function
        return self.func(*args, **kwargs)


class ModelNode(_Node):
    """A node made from a body by `model_node`; `body` is kept so another node can build on it."""

    body: Callable[[Any, GarContext], Asks]


def plain_node(func: Callable) -> _Node:
    """A node or router without I/O, run inline under both APIs (no worker thread per step)."""

    async def inline(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    # a function takes any attribute; mypy does not model __signature__ on one
    inline.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]  # LangGraph injects `runtime` etc. by the signature
    made = _Node(func, inline, name=func.__name__, trace=False)
    made.__doc__ = func.__doc__
    return made


def model_node(body: Callable[[Any, GarContext], Asks]) -> ModelNode:
    """The node (state, runtime) -> update of a body (state, ctx) -> Asks, for both LangGraph APIs."""

    def node(state: Any, runtime: Runtime[GarContext]) -> dict:
        return drive(body(state, runtime.context), runtime.context, state)

    async def anode(state: Any, runtime: Runtime[GarContext]) -> dict:
        return await adrive(body(state, runtime.context), runtime.context, state)

    made = ModelNode(node, anode, name=body.__name__, trace=False)
    made.body = body
    made.__doc__ = body.__doc__
    return made
