"""A trace stores each call once and grows linearly with the number of Analyze passes."""

from __future__ import annotations

import json

import pytest
from helpers import audio_answer, boxes_answer, vote
from trace_versions import as_v1

from gar_agent.models.scripted import ScriptedChatModel
from gar_agent.prompts import PromptSet
from gar_agent.record import build_trace
from gar_agent.runner import run_clip
from gar_agent.state import Settings
from gar_agent.topology import load_topology
from gar_agent.trace.store import read_trace, write_trace


def _trace_file(media, tmp_path, n: int):
    votes = [
        vote(0.3 + i / 1000, i % 2 == 0, tags=(f"tag_{i}", "bow_hand"), anchors=((f"anchor_{i}", 0.5),))
        for i in range(n)
    ]
    model = ScriptedChatModel(
        script={
            "audio": [audio_answer(["violin"], [0.9])],
            "generate": [boxes_answer([[38, 70, 128, 215]])],
            "analyze": votes,
            "refine": ['{"changed": false}'],
        }
    )
    topology, prompts = load_topology("gar"), PromptSet()
    outcome = run_clip(media, Settings(n_votes=n, votes_per_call=1), model, topology=topology, prompts=prompts)
    path = write_trace(build_trace(outcome, media, topology, prompts), tmp_path / f"n{n}")
    return outcome, path


def test_each_call_is_stored_once_and_each_prompt_text_once(media, tmp_path):
    outcome, path = _trace_file(media, tmp_path, 20)
    text = path.read_text()
    doc = json.loads(text)
    assert doc["schema_version"] == 3
    assert len(doc["calls"]) == len(outcome.state.calls) == 2 + 20 + 1
    assert all("calls" not in s for s in doc["steps"])  # steps refer to calls by index
    assert sorted(i for s in doc["steps"] for i in s["call_ids"]) == list(range(len(doc["calls"])))
    prompt = outcome.state.calls_of(0)[0].prompt
    assert text.count(json.dumps(prompt)[1:-1]) == 1  # the analyze prompt, asked 20 times, is stored once
    # and read back, every step holds its calls and what it wrote, as the run streamed them
    trace = read_trace(path)
    assert [c.model_dump(exclude={"media_refs"}) for c in trace.calls()] == [
        c.model_dump() for c in outcome.state.calls
    ]
    last_analyze = [s for s in trace.steps if s.node == "analyze"][-1]
    assert last_analyze.update.kind == "source" and len(last_analyze.update.source.votes) == 20
    assert trace.final_state == outcome.state


def test_a_raw_answer_is_stored_once_a_vote_refers_to_its_call(media, tmp_path):
    outcome, path = _trace_file(media, tmp_path, 5)
    doc = json.loads(path.read_text())
    votes = doc["final_state"]["sources"][0]["votes"]
    assert all("raw" not in v for v in votes)
    answer = vote(0.3 + 3 / 1000, False, tags=("tag_3", "bow_hand"), anchors=(("anchor_3", 0.5),))
    c, j = votes[3]["answer"]
    stored = doc["calls"][c]["answers"][j]  # the 4th vote is the 4th Analyze call's answer
    assert doc["attachments"][stored.removeprefix("attachment://")] == answer
    assert path.read_text().count(stored) == 1  # referred to by the call alone: not again by a vote nor a step
    trace = read_trace(path)
    assert [v.raw for v in trace.final_state.sources[0].votes] == [v.raw for v in outcome.state.sources[0].votes]
    assert trace.final_state.generate == outcome.state.generate  # Generate's answers read back as well


def test_trace_size_is_linear_in_the_number_of_votes(media, tmp_path):
    sizes = {n: _trace_file(media, tmp_path, n)[1].stat().st_size for n in (5, 20, 64)}
    early = (sizes[20] - sizes[5]) / 15  # bytes per extra vote between N=5 and N=20
    late = (sizes[64] - sizes[20]) / 44  # ... and between N=20 and N=64
    # a trace that stored every record again per step grows ~N^2: late would be ~3-4x early
    assert late <= 1.25 * early, sizes


def test_a_version_1_trace_is_still_read(media, tmp_path):
    outcome, path = _trace_file(media, tmp_path, 5)
    trace = read_trace(path)
    old = tmp_path / "old" / "trace.json"
    old.parent.mkdir()
    old.write_text(json.dumps(as_v1(trace)))  # v1 stored steps whole, calls inside the records
    again = read_trace(old)
    assert again.calls() == trace.calls() and again.result == trace.result and again.steps == trace.steps
    assert again.final_state.calls == outcome.state.calls


@pytest.mark.parametrize("damage", ["attachment", "patch", "answer reference"])
def test_a_damaged_trace_is_one_clear_error(media, tmp_path, damage):
    from gar_agent.trace.store import TraceError

    _, path = _trace_file(media, tmp_path, 5)
    doc = json.loads(path.read_text())
    if damage == "attachment":
        doc["attachments"] = {}
    elif damage == "answer reference":
        record = doc["final_state"]["sources"][0]
        record["votes"][0]["answer"] = [len(doc["calls"]), 0]  # a call the trace does not have
    else:
        step = next(s for s in doc["steps"] if s["update"].get("changes"))
        step["update"]["changes"] = [{"op": "replace", "path": "/no/such/path", "value": 1}]
    path.write_text(json.dumps(doc))
    with pytest.raises(TraceError, match="is corrupt"):
        read_trace(path)


@pytest.mark.parametrize(
    "before, after",
    [
        ({}, {"box": [1, 2, 3, 4], "votes": []}),
        ({"votes": [{"i": 0}], "box": [1, 2, 3, 4]}, {"votes": [{"i": 0}, {"i": 1}], "box": [1, 2, 3, 5]}),
        (
            {"analysis": {"anchor_votes": [{"a": "x", "s": 0.5}, {"a": "y", "s": 0.4}], "keep": True}},
            {"analysis": {"anchor_votes": [{"a": "z", "s": 0.9}, {"a": "x", "s": 0.5}], "keep": False}},
        ),
        ({"gate": {"reasons": ["a/b", "c~d"]}, "gone": 1}, {"gate": None, "new/key": {"x~y": 2}}),
    ],
)
def test_a_record_patch_turns_one_record_into_the_next(before, after):
    import copy

    import jsonpatch

    from gar_agent.trace.schema import record_patch

    ops = record_patch(before, after)
    assert jsonpatch.apply_patch(copy.deepcopy(before), ops) == after
    assert record_patch(after, after) == []
