"""Graph topologies as files: each shipped graph behaves as named (the adaptive one decides as the paper's
graph does), user graph files load (or fail in one line), and `gar graph show` draws them offline."""

import json
import runpy
from pathlib import Path

import cv2
import pytest
from helpers import audio_answer, boxes_answer, vote
from langgraph.graph.state import CompiledStateGraph
from pydantic import Field

from gar_agent.cli.app import main
from gar_agent.early_stop import votes_used
from gar_agent.models.scripted import ScriptedChatModel
from gar_agent.paths import GRAPHS_DIR
from gar_agent.runner import run_clip
from gar_agent.state import Settings
from gar_agent.topology import GraphError, available, load_topology

ROOT = Path(__file__).resolve().parents[1]

SHIPPED = ["adaptive", "gar", "generate_only", "no_analysis", "no_gate"]
SECOND_OPINION = Path(__file__).parent / "data" / "second_opinion.py"
BOXES = [[20, 30, 120, 200], [180, 60, 300, 220]]
REFINED = [[25, 30, 125, 200], [185, 60, 305, 220]]  # each box moved 5 px right by Refine


class Counting(ScriptedChatModel):
    """A scripted model that also records the stage of every call it answers."""

    stages: list[str] = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.stages.append(run_manager.metadata["gar_stage"])
        return super()._generate(messages, stop, run_manager, **kwargs)


def model(votes, confidences=(0.9,), second=None):
    """K = len(confidences) sources; `votes` per source (or one list for all), `second` a 2nd source's."""
    k = len(confidences)
    analyze = {"0": votes, "1": second or votes} if k == 2 else votes
    return Counting(
        script={
            "audio": [audio_answer([f"sound {i}" for i in range(k)], list(confidences))],
            "generate": [boxes_answer(BOXES[:k])],
            "analyze": analyze,
            "refine": {str(i): [json.dumps({"bbox": REFINED[i], "changed": True})] for i in range(k)},
        }
    )


def run(media, graph, m, **settings):
    return run_clip(media, Settings(graph=graph, **settings), m, topology=load_topology(graph))


# --- each shipped graph behaves as named ---------------------------------------------------------


def test_the_shipped_graphs_are_the_named_ones_and_langgraph_json_opens_each():
    assert set(SHIPPED) <= set(available())
    spec = json.loads((ROOT / "langgraph.json").read_text())
    assert spec["dependencies"] == ["."]
    for name in SHIPPED:
        assert spec["graphs"][name] == f"./graphs/{name}.py:graph"
        assert isinstance(runpy.run_path(str(GRAPHS_DIR / f"{name}.py"))["graph"], CompiledStateGraph)


def test_generate_only_never_calls_the_model_after_generate(media):
    m = model([vote()] * 5, confidences=(0.9, 0.2))
    out = run(media, "generate_only", m, sources=2)
    assert m.stages == ["audio", "generate"]
    assert [s.node for s in out.steps] == ["generate"]
    assert [s.box for s in out.result.sources] == BOXES
    assert all(s.analysis is None and not s.refined for s in out.result.sources)


def test_no_gate_refines_every_source_even_a_confident_one(media):
    m = model([vote(0.9, True)] * 5, confidences=(0.95, 0.95))
    out = run(media, "no_gate", m, sources=2)
    assert sorted(m.stages) == ["analyze"] * 2 + ["audio", "generate"] + ["refine"] * 2
    for i, src in enumerate(out.result.sources):
        assert src.analysis.n_votes == 5 and src.gate is None
        assert src.refined and src.box == REFINED[i]
    # the same clip through the paper's graph keeps both boxes
    assert [
        s.refined for s in run(media, "gar", model([vote(0.9, True)] * 5, (0.95, 0.95)), sources=2).result.sources
    ] == [False, False]


def test_no_analysis_refines_without_any_analyze_call(media):
    m = model([vote()] * 5, confidences=(0.95,))
    out = run(media, "no_analysis", m)
    assert m.stages == ["audio", "generate", "refine"]
    [src] = out.result.sources
    assert src.analysis is None and src.refined and src.box == REFINED[0]
    assert "no analysis was run" in out.state.calls_of(0)[0].prompt


def test_adaptive_stops_early_on_clear_cut_votes(media):
    # 3 of 5 keep votes at av 0.9 settle it: even 2 more "keep false, av 0" leave keep and av 0.54.
    m = model([vote(0.9, True)] * 5)
    out = run(media, "adaptive", m, n_votes=5)
    [src] = out.result.sources
    assert src.analysis.n_votes == 3 and out.result.settings.n_votes == 5
    assert m.stages == ["audio", "generate", "analyze", "analyze", "analyze"]
    assert all(c.n == 1 for c in out.state.calls_of(0))  # one vote a pass by default
    assert src.refined is False and src.box == BOXES[0]
    # an unsure sound is refined whatever the votes say: one vote is enough
    out = run(media, "adaptive", model([vote(0.9, True)] * 5, confidences=(0.3,)))
    assert out.result.sources[0].analysis.n_votes == 1 and out.result.sources[0].refined


SCRIPTED_SEQUENCES = [
    [vote(0.9, True)] * 5,
    [vote(0.9, True), vote(0.2, False), vote(0.8, True), vote(0.3, False), vote(0.7, True)],
    [vote(0.6, True), "not json", "{}", vote(0.4, True), vote(0.5, False)],
    ["not json", "not json", "not json", vote(0.9, True), vote(0.9, True)],
    [vote(0.5, True), vote(0.5, True), vote(0.1, False), "garbage", vote(0.5, True)],
    [vote(0.9, False), vote(0.9, False), vote(0.9, True), vote(0.9, True), vote(0.9, True)],
]


@pytest.mark.parametrize("per_call", [None, 2])
@pytest.mark.parametrize("i", range(len(SCRIPTED_SEQUENCES)))
def test_adaptive_decides_as_the_paper_graph_end_to_end(media, i, per_call):
    votes = SCRIPTED_SEQUENCES[i]
    settings = {"sources": 2, "n_votes": 5, "votes_per_call": per_call}
    full = run(media, "gar", model(votes, (0.9, 0.9), second=votes[::-1]), **settings)
    early = run(media, "adaptive", model(votes, (0.9, 0.9), second=votes[::-1]), **settings)
    assert early.result.error is None
    for f, e, fs, es in zip(full.result.sources, early.result.sources, full.state.sources, early.state.sources):
        assert (e.refined, e.box) == (f.refined, f.box)
        # the adaptive loop collected exactly what the pure rule predicts, a pass at a time
        expected = votes_used(fs.votes, 5, fs.audio_confidence, full.state.settings, per_call or 1)
        assert e.analysis.n_votes == expected <= 5
        assert [v.raw for v in es.votes] == [v.raw for v in fs.votes[:expected]]


# --- user graph files --------------------------------------------------------------------------


@pytest.mark.parametrize("opinion, refined", [(vote(0.2, False), True), (vote(0.9, True), False)])
def test_a_user_graph_file_with_its_own_node_loads_by_path_and_runs(media, opinion, refined):
    topology = load_topology(str(SECOND_OPINION))
    assert topology.name == "second_opinion"
    m = model([vote(0.9, True)] * 5 + [opinion])
    out = run_clip(media, Settings(graph=topology.name), m, topology=topology)
    [src] = out.result.sources
    assert m.stages == ["audio", "generate", "analyze", "analyze"] + (["refine"] if refined else [])
    assert "second_opinion" in [s.node for s in out.steps]
    assert src.refined is refined and src.analysis.n_votes == 5  # the opinion is not a vote
    if refined:
        assert src.gate.reasons == ["second opinion: keep is false"] and src.box == REFINED[0]


def test_the_documented_second_opinion_code_is_the_tested_file():
    docs = [p for p in (ROOT / "README.md",) if p.is_file()]
    text = next(p.read_text() for p in docs if "def second_opinion" in p.read_text())
    blocks = [b.split("```")[0].strip() for b in text.split("```python")[1:]]
    example = [b for b in blocks if "second_opinion" in b]
    source = SECOND_OPINION.read_text()
    assert len(example) >= 2 and all(b in source for b in example)


@pytest.mark.parametrize(
    "code, message",
    [
        ("def build(:\n", "failed to load (SyntaxError"),
        ("x = 1\n", "defines no build() function"),
        ("def build():\n    return 42\n", "build() returned int, expected a StateGraph"),
        (
            "def build():\n    raise RuntimeError('wired wrong')\n",
            "failed to load (RuntimeError: wired wrong)",
        ),
    ],
)
def test_a_broken_graph_file_is_a_one_line_graph_error(tmp_path, code, message):
    path = tmp_path / "broken.py"
    path.write_text(code)
    with pytest.raises(GraphError) as e:
        load_topology(str(path))
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


# --- gar graph show --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    """`gar` in-process."""
    from gar_agent.cli import app as cli_app

    return cli_app.main


@pytest.mark.parametrize("name", SHIPPED + [str(SECOND_OPINION)])
def test_graph_show_prints_the_nodes_and_writes_mermaid_and_png(cli, capsys, tmp_path, name):
    assert cli(["graph", "show", name, "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    topology = load_topology(name)
    nodes = list(topology.compile().get_graph(xray=True).nodes)
    for node in nodes:
        if not node.endswith("__"):
            assert node in shown
    mermaid = (tmp_path / f"{topology.name}.mmd").read_text()
    assert mermaid.lstrip().startswith("---") and "graph TD" in mermaid
    image = cv2.imread(str(tmp_path / f"{topology.name}.png"))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    if name in ("gar", "adaptive"):  # routers' targets come from their Literal types / path maps
        assert "gate -.-> refine" in shown and "gate -.-> __end__" in shown


def test_graph_show_marks_a_renamed_route_and_prints_mermaid_on_request(cli, capsys, tmp_path):
    assert cli(["graph", "show", "no_gate", "--out", str(tmp_path)]) == 0
    assert "analyze -.-> refine     [votes_complete: 'gate']" in capsys.readouterr().out
    assert cli(["graph", "show", "adaptive", "--mermaid", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith("---") and "localize\\3aanalyze -.-> localize\\3agate;" in out


@pytest.mark.parametrize("name", ["nope", "missing/graph.py"])
def test_graph_show_of_an_unknown_graph_is_one_line_and_exit_2(cli, capsys, tmp_path, name):
    assert cli(["graph", "show", name, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gar: error: ") and "\n" not in err


NO_OP_GRAPH = '''
from langgraph.graph import END, START, StateGraph

from gar_agent.nodes import GarContext, analyze, gate, run_graph, votes_complete
from gar_agent.state import SourceOutput, SourceState


def look(state: SourceState) -> None:
    """A researcher's probe: reads the state, writes nothing."""
    print("looked at source", state.source.index)


def nothing(state: SourceState) -> dict:
    return {}


def build() -> StateGraph:
    source = StateGraph(SourceState, context_schema=GarContext, output_schema=SourceOutput)
    source.add_node("analyze", analyze)
    source.add_node("look", look)
    source.add_node("gate", gate)
    source.add_node("nothing", nothing)
    source.add_edge(START, "analyze")
    source.add_conditional_edges("analyze", votes_complete, {"analyze": "analyze", "gate": "look", END: END})
    source.add_edge("look", "gate")
    source.add_edge("gate", "nothing")
    source.add_edge("nothing", END)
    return run_graph(source)
'''


def test_a_node_that_writes_nothing_is_still_a_step_of_the_run_and_of_its_trace(media, tmp_path):
    from gar_agent.prompts import PromptSet
    from gar_agent.run import run_and_record
    from gar_agent.trace.store import read_trace

    path = tmp_path / "probe.py"
    path.write_text(NO_OP_GRAPH)
    topology = load_topology(str(path))
    settings = Settings(graph=topology.name, n_votes=2, votes_per_call=1)
    done = run_and_record(
        media, settings, model([vote(0.9, True)] * 2), topology=topology, prompts=PromptSet(), trace_dir=tmp_path
    )
    steps = [(s.node, s.update) for s in done.outcome.steps if s.node != "localize"]
    assert [n for n, _ in steps] == ["generate", "analyze", "analyze", "look", "gate", "nothing"]
    assert steps[3][1] == {} and steps[5][1] == {}  # ran, wrote nothing
    trace = read_trace(done.trace_path)
    assert [s.node for s in trace.steps] == ["generate", "analyze", "analyze", "look", "gate", "nothing"]
    look = trace.steps[3]  # the trace file stores calls once; loaded, each step's state names its own (none)
    assert look.state in ({}, {"calls": []}) and look.calls == [] and look.source == 0


def test_a_researchers_own_node_is_shown_live_and_by_trace_show(example, tmp_path, capsys):
    image, audio, _ = example
    keep = '{"av_consistency": 0.9, "keep": true}'
    script = tmp_path / "s.json"
    script.write_text(json.dumps({
        "audio": ['{"audio_class": "violin", "audio_confidence_score": 0.95}'],
        "generate": ['{"bbox": [10, 20, 110, 220], "description": "a violin"}'],
        "analyze": [keep] * 5 + ['{"av_consistency": 0.2, "keep": false}'],  # the 6th: the second opinion
        "refine": ['{"bbox": [12, 22, 112, 222]}'],
    }))  # fmt: skip
    graph = str(Path(__file__).parent / "data" / "second_opinion.py")
    args = ["run", str(image), str(audio), "--graph", graph, "--backend", f"scripted:{script}",
            "--trace-dir", str(tmp_path / "t"), "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 0
    live = capsys.readouterr().out
    assert "second_opinion · source 0" in live and "gate now: refine (second opinion: keep is false)" in live
    (run,) = (tmp_path / "t").glob("*/trace.json")
    assert main(["trace", "show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "second_opinion · source 0" in shown and "gate now: refine (second opinion: keep is false)" in shown
    assert "-> [12, 22, 112, 222] · refined" in shown  # what happened, not a gate panel saying "skip"
