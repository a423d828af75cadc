"""One async core: run a clip, run and record it, evaluate a sample, each written once (async).

The sync entry points run the same coroutines on an event loop (gar_agent/loop.py); these tests
hold them to giving the same results and traces as the async ones, with and without a
checkpointer, to `after_generate` working on the async path, to a researcher's plain-function
nodes still running (in a worker thread), and to a sync call from that loop failing clearly
instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

import pytest
from helpers import audio_answer, boxes_answer, scripted, vote

from gar_agent.checkpoints import memory_saver, sqlite_saver
from gar_agent.loop import LoopReentry, process_loop
from gar_agent.prompts import PromptSet
from gar_agent.run import STOP, arun_and_record, arun_clip, run_and_record, run_clip
from gar_agent.state import Settings
from gar_agent.topology import load_topology
from gar_agent.trace.store import read_trace

SETTINGS = Settings(sources=2, n_votes=3, votes_per_call=1)


def two_sources():
    return scripted(
        audio=[audio_answer(["violin", "drum"], [0.9, 0.8])],
        generate=[boxes_answer([[10, 10, 100, 100], [150, 20, 250, 120]])],
        analyze={"0": [vote(0.9), vote(0.2, False), "not json"], "1": [vote(0.9), vote(0.8), vote(0.7)]},
        refine=[json.dumps({"bbox": [20, 20, 90, 90], "changed": True})],
    )


def saver_for(kind: str, tmp_path, name: str):
    if kind == "none":
        return None
    return memory_saver() if kind == "memory" else sqlite_saver(tmp_path / f"{name}.sqlite")


CLOCKS = {"wall_s", "elapsed_s", "run_id", "created", "namespace"}  # what differs between any two runs (ids, clocks)


def without_clocks(value):
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: without_clocks(v) for k, v in value.items() if k not in CLOCKS}
    if isinstance(value, list):
        return [without_clocks(v) for v in value]
    return value


def in_any_order(steps) -> list[str]:
    """Steps as a sorted list: parallel branches (and their join) may finish in either order."""
    return sorted(json.dumps([s.node, len(s.namespace), without_clocks(s.update)], sort_keys=True) for s in steps)


def comparable(trace_path) -> dict:
    """A trace as JSON without ids and clocks, its folder named ROOT, the steps and calls of the
    parallel branches in a fixed order (which branch's step streams first is up to the scheduler)."""
    doc = without_clocks(read_trace(trace_path))
    doc = json.loads(json.dumps(doc).replace(str(trace_path.parent.parent), "ROOT"))
    for step in doc["steps"]:
        step.pop("index")
    doc["steps"].sort(key=lambda s: (s["source"] is not None, s["source"] or 0, s["pass_index"], s["node"]))
    doc["final_state"]["calls"].sort(key=lambda c: json.dumps(c, sort_keys=True))
    return doc


@pytest.mark.parametrize("store", ["none", "memory", "sqlite"])
def test_sync_and_async_run_and_record_give_the_same_result_and_trace(media, tmp_path, store):
    topology, prompts = load_topology("gar"), PromptSet()
    sync = run_and_record(
        media, SETTINGS, two_sources(), topology=topology, prompts=prompts, trace_dir=tmp_path / "sync",
        checkpointer=saver_for(store, tmp_path, "sync"), thread_id="t",
    )  # fmt: skip
    async_ = asyncio.run(
        arun_and_record(
            media, SETTINGS, two_sources(), topology=topology, prompts=prompts, trace_dir=tmp_path / "async",
            checkpointer=saver_for(store, tmp_path, "async"), thread_id="t",
        )
    )  # fmt: skip
    assert without_clocks(sync.outcome.state) == without_clocks(async_.outcome.state)
    assert without_clocks(sync.outcome.result) == without_clocks(async_.outcome.result)
    assert in_any_order(sync.outcome.steps) == in_any_order(async_.outcome.steps)
    assert comparable(sync.trace_path) == comparable(async_.trace_path)
    sources = sync.outcome.result.sources
    assert [s.refined for s in sources] == [True, False] and sources[0].box == [20, 20, 90, 90]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_checkpointed_run_of_either_entry_point_leaves_the_same_history(media, tmp_path, store):
    """The sync SQLite saver cannot serve LangGraph's async API by itself; the run still checkpoints into it."""
    topology = load_topology("gar")
    histories = []
    for name, entry in (("sync", run_clip), ("async", lambda *a, **k: asyncio.run(arun_clip(*a, **k)))):
        saver = saver_for(store, tmp_path, name)
        out = entry(media, SETTINGS, two_sources(), topology=topology, checkpointer=saver, thread_id="t")
        history = list(topology.compile(checkpointer=saver).get_state_history({"configurable": {"thread_id": "t"}}))
        assert without_clocks(history[0].values["sources"]) == without_clocks(out.state.sources)
        histories.append([h.next for h in history])
    assert histories[0] == histories[1] and len(histories[0]) >= 3


def test_an_async_sqlite_saver_serves_the_async_entry_point(media, tmp_path):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    topology = load_topology("gar")

    async def main():
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.sqlite")) as saver:
            out = await arun_clip(media, SETTINGS, two_sources(), topology=topology, checkpointer=saver, thread_id="t")
            graph = topology.compile(checkpointer=saver)
            latest = await graph.aget_state({"configurable": {"thread_id": "t"}})
            return out, latest

    out, latest = asyncio.run(main())
    assert latest.values["sources"] == out.state.sources and out.result.sources[0].refined


@pytest.mark.parametrize("store", ["none", "memory", "sqlite"])
@pytest.mark.parametrize("asynchronous", [False, True])
def test_after_generate_stops_or_edits_the_run_on_both_paths(media, tmp_path, store, asynchronous):
    topology = load_topology("gar")
    seen = []

    def stop(state):
        seen.append([s.initial_box for s in state.sources])
        return STOP

    async def edit(state):  # a coroutine function is awaited
        edited = [
            s.model_copy(update={"box": [12, 12, 98, 98], "initial_box": [12, 12, 98, 98]}) for s in state.sources
        ]
        return {"sources": edited[:1]} if len(edited) == 2 else None

    def run(after, name):
        saver = saver_for(store, tmp_path, name)
        kwargs = dict(topology=topology, checkpointer=saver, after_generate=after)
        if asynchronous:
            return asyncio.run(arun_clip(media, SETTINGS, two_sources(), **kwargs))
        return run_clip(media, SETTINGS, two_sources(), **kwargs)

    stopped = run(stop, "stop")
    assert [s.node for s in stopped.steps] == ["generate"] and seen == [[[10, 10, 100, 100], [150, 20, 250, 120]]]
    assert all(not s.votes for s in stopped.state.sources)

    forked = run(edit, "edit")
    assert forked.steps[0].node == "generate" and "analyze" in [s.node for s in forked.steps]
    assert forked.state.sources[0].initial_box == [12, 12, 98, 98]
    assert forked.state.sources[0].analysis is not None  # the edited state ran on through Analyze


SYNC_NODES = '''
import threading

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from gar_agent.calls import Request, ask
from gar_agent.nodes import GarContext, analyze, gate, report, run_graph, votes_complete
from gar_agent.state import SourceOutput, SourceState

THREADS = []


def look(state: SourceState) -> None:
    """A researcher's plain function that writes nothing."""
    THREADS.append(("look", threading.current_thread().name))


def ask_again(state: SourceState, runtime: Runtime[GarContext]) -> dict:
    """A researcher's plain function that asks the model itself (blocking)."""
    THREADS.append(("ask_again", threading.current_thread().name))
    ctx, src = runtime.context, state.source
    call = ask(ctx.model, ctx.media, Request("analyze", src.index, "analyze_single.txt", "one more?"))
    return report(src.model_copy(update={"description": call.answers[0][:20]}), call)


def build() -> StateGraph:
    source = StateGraph(SourceState, context_schema=GarContext, output_schema=SourceOutput)
    source.add_node("analyze", analyze)
    source.add_node("look", look)
    source.add_node("ask_again", ask_again)
    source.add_node("gate", gate)
    source.add_edge(START, "analyze")
    source.add_conditional_edges("analyze", votes_complete, {"analyze": "analyze", "gate": "look", END: END})
    source.add_edge("look", "ask_again")
    source.add_edge("ask_again", "gate")
    source.add_edge("gate", END)
    return run_graph(source)
'''


@pytest.mark.parametrize("asynchronous", [False, True])
def test_plain_function_nodes_of_a_user_graph_run_unchanged_in_a_worker_thread(media, tmp_path, asynchronous):
    path = tmp_path / "sync_nodes.py"
    path.write_text(SYNC_NODES)
    topology = load_topology(str(path))
    settings = Settings(graph=topology.name, n_votes=2, votes_per_call=1)
    model = scripted(
        audio=[audio_answer(["violin"], [0.9])],
        generate=[boxes_answer([[5, 5, 50, 50]])],
        analyze=[vote(0.9), vote(0.8), "a third answer"],
    )
    module = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(path))
    module.THREADS.clear()
    if asynchronous:
        out = asyncio.run(arun_clip(media, settings, model, topology=topology))
    else:
        out = run_clip(media, settings, model, topology=topology)
    nodes = [s.node for s in out.steps if s.node != "localize"]
    assert nodes == ["generate", "analyze", "analyze", "look", "ask_again", "gate"]
    [src] = out.state.sources
    assert src.description == "a third answer" and len(src.votes) == 2
    assert [c.stage for c in out.state.calls].count("analyze") == 3  # the node's own call is in the run's calls
    loop_threads = {"MainThread", "gar"}
    assert [n for n, _ in module.THREADS] == ["look", "ask_again"]
    assert all(t not in loop_threads for _, t in module.THREADS)  # neither blocked the event loop


def test_a_sync_entry_point_called_on_its_own_loop_raises_instead_of_waiting_forever(media):
    async def inside():
        return run_clip(media, SETTINGS, two_sources())

    future = process_loop().submit(inside())
    with pytest.raises(LoopReentry, match="await the async version"):
        future.result(timeout=60)
    # the loop is still free: a sync call from another thread goes through
    assert run_clip(media, SETTINGS, two_sources()).result.sources[0].refined


def test_a_sync_entry_point_from_another_event_loop_runs(media):
    """A notebook's loop (or any caller's) is not the one the run waits on: the sync call works there."""

    async def notebook_cell():
        return run_clip(media, SETTINGS, two_sources()), threading.current_thread().name

    out, thread = asyncio.run(notebook_cell())
    assert thread == "MainThread" and out.result.sources[0].refined


def test_the_old_names_still_work():
    """Names given one meaning each keep their old spellings for graph files, scripts and notebooks."""
    import gar_agent.run as run
    import gar_agent.runner as runner

    assert runner.run_clip is run.run_clip and runner.arun_clip is run.arun_clip and runner.STOP == STOP
    assert run.Recorded is run.TracedRun
    settings = Settings(n_votes=5, votes_per_call=2)
    assert settings.votes_per_pass == settings.batch == 2 and Settings(n_votes=3).votes_per_pass == 3
