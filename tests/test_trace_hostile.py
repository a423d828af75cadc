"""Traces as untrusted files: values that break JSON readers, tampered attachments, huge graphs.

Each hostile trace is a real run's trace with one thing changed. Every reader (`trace list`,
`trace show`, `replay`, `view --export`, the viewer's API) must answer with one line naming the
file and what is wrong, and a folder holding such a trace still lists the others.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from helpers import cli

from gar_agent.graph_layout import layers
from gar_agent.trace.store import TraceError, read_trace

GOOD = "good"


def _hostile(traces: Path) -> dict[str, tuple[str, str]]:
    """Write the hostile variants beside the good run: name -> (trace text, words of the error)."""
    good = next(traces.glob("*/trace.json"))
    good.parent.rename(traces / GOOD)
    text = (traces / GOOD / "trace.json").read_text()
    data = json.loads(text)
    assert '"wall_s":' in text
    key = next(iter(data["attachments"]))
    tampered = {**data, "attachments": {**data["attachments"], key: data["attachments"][key] + " (edited)"}}
    # replay and fork read the run's frame and audio off the final state (a run always records both)
    no_image = {**data, "final_state": {**data["final_state"], "image": None}}
    no_audio = {**data, "final_state": {**data["final_state"], "audio": None}}
    cases = {
        "nan": (re.sub(r'"wall_s":[0-9.e-]+', '"wall_s":NaN', text), "NaN"),
        "infinity": (re.sub(r'"wall_s":[0-9.e-]+', '"wall_s":-Infinity', text), "-Infinity"),
        "overflow": (re.sub(r'"wall_s":[0-9.e-]+', '"wall_s":1e999', text), "overflows a float"),
        "bigint": (re.sub(r'"wall_s":[0-9.e-]+', '"wall_s":' + "7" * 5000, text), "5000 digits"),
        "deep": (text[:-1] + ',"notices":' + "[" * 100_000 + "]" * 100_000 + "}", "nests deeper than"),
        "deepish": (text[:-1] + ',"notices":[' + "[" * 400 + "]" * 400 + "]}", "nests deeper than"),
        "tampered": (json.dumps(tampered), "does not match its sha256"),
        "no_image": (json.dumps(no_image), "records no image"),
        "no_audio": (json.dumps(no_audio), "records no image or no audio"),
    }
    for name, (body, _) in cases.items():
        (traces / name).mkdir()
        (traces / name / "trace.json").write_text(body)
    return cases


@pytest.fixture()
def hostile(recorded):
    traces = recorded[0]
    return traces, _hostile(traces)


def test_each_hostile_value_is_one_clear_error(hostile, capsys, tmp_path):
    traces, cases = hostile
    assert read_trace(traces / GOOD).run_id
    for name, (_, why) in cases.items():
        path = traces / name / "trace.json"
        with pytest.raises(TraceError, match=re.escape(why)) as err:
            read_trace(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        for args in (
            ["trace", "show", path],
            ["replay", path, "--out", tmp_path / "r", "--trace-dir", tmp_path / "t"],
            ["view", path.parent, "--export", tmp_path / f"{name}.html"],
        ):
            code, out, err_text = cli(capsys, *args)
            assert code == 2, (name, args, out, err_text)
            assert why in err_text and "Traceback" not in err_text and len(err_text.strip().splitlines()) == 1
            assert str(path) in err_text, (name, args, err_text)  # the file named as given, not `trace.json`
    # the list shows every run: the good one as a row, each hostile one as its error
    code, out, err_text = cli(capsys, "trace", "list", traces)
    assert code == 0 and "Traceback" not in out + err_text
    assert out.count("deeper than") == 2 and "NaN" in out and "sha256" in out


def test_the_viewer_lists_the_rest_beside_hostile_traces(hostile):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from gar_agent.view.index import Folder
    from gar_agent.view.server import create_app

    traces, cases = hostile
    client = TestClient(create_app(Folder.open(traces), warm=False))
    r = client.get("/api/runs")
    assert r.status_code == 200
    rows = {row["ref"]: row for row in r.json()["rows"]}
    assert set(rows) == {GOOD, *cases}
    assert "error" not in rows[GOOD] and rows[GOOD]["boxes"]
    for name, (_, why) in cases.items():
        assert why in rows[name]["error"], rows[name]
        r = client.get("/api/run", params={"ref": name})
        assert r.status_code == 422 and why in r.json()["error"]
    # a filter reads every run: still one answer
    assert client.get("/api/runs", params={"q": "violin"}).status_code == 200


def test_an_over_size_trace_is_refused_before_it_is_read(recorded, monkeypatch):
    traces = recorded[0]
    path = next(traces.glob("*/trace.json"))
    monkeypatch.setenv("GAR_MAX_TRACE_MB", str(path.stat().st_size / 2e6))
    with pytest.raises(TraceError, match="over the 0 MB limit: set GAR_MAX_TRACE_MB"):
        read_trace(path)
    monkeypatch.setenv("GAR_MAX_TRACE_MB", "5")
    assert read_trace(path).run_id


# --------------------------------------------------------------------------- graph layout


def test_layout_of_a_long_chain_needs_no_recursion():
    n = 5000
    nodes = ["__start__", *(f"n{i}" for i in range(n)), "__end__"]
    edges = list(zip(nodes, nodes[1:])) + [("n10", "n3")]  # a back edge, as the Analyze loop
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # the old depth-first search recursed once per node
    try:
        layer = layers(nodes, edges)
    finally:
        sys.setrecursionlimit(limit)
    assert layer["__start__"] == 0 and layer["n0"] == 1 and layer["__end__"] == n + 1


def test_layout_is_longest_path_and_fast_on_a_big_graph():
    nodes = ["__start__", "a", "b", "c", "d", "__end__"]
    edges = [("__start__", "a"), ("a", "b"), ("b", "c"), ("a", "c"), ("c", "a"), ("c", "d"), ("d", "__end__")]
    assert layers(nodes, edges) == {"__start__": 0, "a": 1, "b": 2, "c": 3, "d": 4, "__end__": 5}
    wide = ["__start__", *(f"w{i}" for i in range(8000)), "__end__"]
    fan = [("__start__", f"w{i}") for i in range(8000)] + [(f"w{i}", f"w{i + 1}") for i in range(0, 7999, 2)]
    t = time.perf_counter()
    layer = layers(wide, fan + [(f"w{i}", "__end__") for i in range(8000)])
    assert time.perf_counter() - t < 1.0  # was 36 s per request: quadratic relaxation
    assert layer["w1"] == 2 and layer["__end__"] == 3
