"""One run stored by each schema (1, 2 and today's 3) reads as the same typed trace and shows the same
picture in `gar trace show`, `gar trace diff` and the viewer's run and diff documents."""

from __future__ import annotations

import json
import shutil

import pytest
from trace_versions import DATA, FIXTURE_ANSWERS, _vote, record_run

from gar_agent.cli.app import main
from gar_agent.state import Settings
from gar_agent.trace.steps import GenerateUpdate, SourceUpdate
from gar_agent.trace.store import read_trace, write_trace
from gar_agent.view.documents import diff_document, run_document
from gar_agent.view.index import Folder

RUN = "fixture-run-0001"


@pytest.fixture(scope="module")
def versions(tmp_path_factory, example) -> dict[str, object]:
    """The fixture run as schema 1, 2 and 3 files (3: written today from what 2 reads), and another run."""
    root = tmp_path_factory.mktemp("versions")
    paths = {}
    for v in ("v1", "v2"):
        paths[v] = root / v / RUN / "trace.json"
        paths[v].parent.mkdir(parents=True)
        shutil.copyfile(DATA / f"{v}.json", paths[v])
    paths["v3"] = write_trace(read_trace(paths["v2"]), root / "v3")
    image, audio, _ = example
    other = {**FIXTURE_ANSWERS, "analyze": [_vote(0.9, True)] * 4}  # confident votes: the gate skips Refine
    paths["other"] = write_trace(record_run(image, audio, other, Settings(n_votes=4, votes_per_call=2)), root / "b")
    return paths


def _gar(capsys, *args) -> str:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_the_fixtures_are_what_the_old_writers_stored(versions):
    v1, v2, v3 = (json.loads(versions[v].read_text()) for v in ("v1", "v2", "v3"))
    assert (v1["schema_version"], v2["schema_version"], v3["schema_version"]) == (1, 2, 3)
    assert "state" in v1["steps"][1] and "calls" in v1["final_state"]["sources"][0]
    assert "wrote" in v2["steps"][0] and "changes" in v2["steps"][1] and "calls" in v2
    assert [s["update"]["kind"] for s in v3["steps"]] == ["generate", "source", "source", "source", "source"]
    # schema 3 stores each raw answer once: a vote names its call's answer
    assert all("raw" not in v and len(v["answer"]) == 2 for v in v3["final_state"]["sources"][0]["votes"])
    assert all("raw" in v for v in v2["final_state"]["sources"][0]["votes"])


def test_each_version_reads_as_the_same_typed_trace(versions):
    v1, v2, v3 = (read_trace(versions[v]) for v in ("v1", "v2", "v3"))
    assert v1.steps == v2.steps == v3.steps
    assert v1.final_state == v2.final_state == v3.final_state and v1.result == v2.result == v3.result
    gen, first, refine = v3.steps[0].update, v3.steps[1].update, v3.steps[-1].update
    assert isinstance(gen, GenerateUpdate) and gen.sources[0].audio_class == "violin"
    assert isinstance(first, SourceUpdate) and [v.raw for v in first.source.votes] == FIXTURE_ANSWERS["analyze"][:2]
    assert isinstance(refine, SourceUpdate) and refine.source.box == [30, 60, 120, 210]


def test_trace_show_gives_the_same_picture_of_each_version(versions, capsys):
    shown = {v: _gar(capsys, "trace", "show", versions[v]) for v in ("v1", "v2", "v3")}
    assert shown["v1"] == shown["v2"] == shown["v3"]
    picture = shown["v3"]
    for part in (
        "generate",
        "analyze · source 0 · votes 4",
        "gate · source 0",
        "refine · source 0",
        "dropped: no JSON",
    ):
        assert part in picture
    assert "audio_single.txt" in picture  # Generate's calls are shown (a v1 trace once showed none)
    for k in range(5):
        steps = {v: _gar(capsys, "trace", "show", versions[v], "--step", k) for v in ("v1", "v2", "v3")}
        assert steps["v1"] == steps["v2"] == steps["v3"], k


def test_trace_diff_gives_the_same_picture_of_each_version(versions, capsys):
    diffs = {v: _gar(capsys, "trace", "diff", versions[v], versions["other"]) for v in ("v1", "v2", "v3")}
    assert diffs["v1"] == diffs["v2"] == diffs["v3"]
    assert "source 0 gate" in diffs["v3"] and "answers" in diffs["v3"]
    assert "the runs agree" in _gar(capsys, "trace", "diff", versions["v1"], versions["v3"])


def test_the_viewer_gives_the_same_documents_of_each_version(versions):
    docs, traces = {}, {}
    for v in ("v1", "v2", "v3"):
        folder = Folder.open(versions[v].parent)
        traces[v] = folder.read(".")
        docs[v] = run_document(traces[v], ".")
    assert docs["v1"] == docs["v2"] == docs["v3"]
    kinds = [s["detail"]["kind"] for s in docs["v3"]["steps"]]
    assert kinds == ["generate", "analyze", "analyze", "gate", "refine"]
    assert [v["raw"] for v in docs["v3"]["steps"][2]["detail"]["votes"]] == FIXTURE_ANSWERS["analyze"]
    other = read_trace(versions["other"])
    sides = {v: diff_document(traces[v], other, "a", "b") for v in ("v1", "v2", "v3")}
    assert sides["v1"] == sides["v2"] == sides["v3"] and not sides["v3"]["same"]


def test_every_kind_of_update_is_stored_and_read_back():
    from gar_agent.trace.schema import TraceStep, from_document, to_document
    from gar_agent.trace.steps import classify_update

    trace = read_trace(DATA / "v2.json")
    record = trace.final_state.sources[0].model_dump(mode="json")
    written = {
        "error": {"error": "my node gave up"},
        "empty": {},
        "other": {"my_channel": {"score": 0.5}, "source": record},  # a researcher's node: kept as it wrote it
        "source": {"source": record, "sources": [record]},
    }
    for i, (kind, update) in enumerate(written.items()):
        typed = classify_update({**update, "calls": []}, 0)
        assert typed.kind == kind
        trace.steps.append(TraceStep(index=5 + i, node=f"mine_{kind}", source=0, update=typed))
    again = from_document(json.loads(json.dumps(to_document(trace))))
    assert again.steps == trace.steps
    assert again.steps[-2].update.wrote["my_channel"] == {"score": 0.5}
    assert again.steps[-2].update.record(0) == trace.final_state.sources[0]
    # a Generate update that does not validate is kept whole, not refused
    assert classify_update({"generate": {"audio": "not a list"}}).kind == "other"
