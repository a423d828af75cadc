"""`gar view`'s HTTP API without a browser: what a run shows, path safety, bad input, export, CLI.

The folders are made by tests/view_folders.py (shared with tests/test_view_browser.py): scripted runs
saved with the project's runner and trace store (single skipped, single refined, duet, failed), a
corrupt and a foreign trace.json, and a small `gar eval` folder run with a scripted model.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import audio_answer, boxes_answer, scripted, vote
from view_folders import EDIT, make_eval, make_graph_runs, make_mixed, make_runs

from gar_agent.cli.app import main
from gar_agent.media import load_media
from gar_agent.prompts import PromptSet
from gar_agent.record import build_trace
from gar_agent.runner import run_clip
from gar_agent.state import Settings
from gar_agent.topology import load_topology
from gar_agent.trace.store import read_trace, write_trace

pytest.importorskip("starlette", reason="the viewer's extra is not installed: pip install -e '.[view]'")
from starlette.testclient import TestClient  # noqa: E402

from gar_agent.view.graph_svg import taken_path  # noqa: E402
from gar_agent.view.index import Folder  # noqa: E402
from gar_agent.view.server import create_app  # noqa: E402

TESTS = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- folders made by the suite


@pytest.fixture(scope="module")
def runs(tmp_path_factory, example) -> Path:
    return make_runs(tmp_path_factory.mktemp("view"), example)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Path:
    return make_eval(tmp_path_factory.mktemp("view-eval"))


@pytest.fixture(scope="module")
def client(runs) -> TestClient:
    return TestClient(create_app(Folder.open(runs), warm=False))


def snapshot(root: Path) -> dict:
    """Every file under root with its size and modification time (to show nothing is written)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# --------------------------------------------------------------------------- runs and one run


def test_runs_list_has_every_run_and_one_error_row_per_unreadable_trace(client):
    page = client.get("/api/runs").json()
    assert page["total"] == 6
    rows = {r["ref"]: r for r in page["rows"]}
    assert {"corrupt", "foreign"} <= set(rows) and "not JSON" in rows["corrupt"]["error"]
    assert "not a gar trace" in rows["foreign"]["error"]
    duet = rows["duet"]
    assert (duet["k"], duet["n"], duet["graph"], duet["protocol"], duet["refined"]) == (2, 2, "gar", "gar", 1)
    assert duet["boxes"] == [[38, 70, 128, 215], [190, 80, 318, 205]] and duet["calls"] == 5
    assert rows["failed"]["failed"] and "generate" in rows["failed"]["run_error"].lower()
    assert [r["ref"] for r in client.get("/api/runs?q=duet").json()["rows"]] == ["duet"]
    assert client.get("/api/runs?limit=2&offset=1").json()["rows"] == page["rows"][1:3]


def test_a_run_document_follows_the_trace_step_by_step(client, runs):
    doc = client.get("/api/run", params={"ref": "single-refined"}).json()
    trace = read_trace(runs / "single-refined")
    assert (
        [s["node"] for s in doc["steps"]] == [s.node for s in trace.steps] == ["generate", "analyze", "gate", "refine"]
    )
    gate = doc["steps"][2]["detail"]["gate"]
    assert gate == trace.steps[2].state["sources"][0]["gate"]
    assert gate["refine"] is True and gate["tau_av"] == 0.7
    refine = doc["steps"][3]
    assert refine["detail"]["refinement"]["applied"] in ("ops+bbox", "bbox", "ops")
    boxes = {b["kind"]: b["box"] for b in refine["boxes"]}
    assert boxes["previous"] == boxes["initial"] == [38, 70, 128, 215]
    assert boxes["current"] == trace.final_state.sources[0].box != [38, 70, 128, 215]
    assert {b["kind"] for b in doc["final"]["boxes"]} == {"initial", "final"}
    assert doc["steps"][1]["calls"][0]["answers"] == trace.steps[1].calls[0].answers
    assert doc["protocol"] == "gar" and doc["image"] == {"width": 330, "height": 250}


def test_the_graph_highlights_the_path_the_run_took(client):
    skip = client.get("/api/run", params={"ref": "single-skip"}).json()["graph_svg"]
    refined = client.get("/api/run", params={"ref": "single-refined"}).json()["graph_svg"]
    assert 'class="edge conditional taken" data-edge="localize:gate->localize:__end__"' in skip
    assert 'class="node taken" data-node="localize:refine"' not in skip
    assert 'class="node taken" data-node="localize:refine"' in refined
    assert 'class="edge conditional" data-edge="localize:gate->localize:__end__"' in refined  # not taken


def test_taken_path_of_a_duet_and_of_a_failed_generate():
    edges = [
        ("__start__", "generate", False),
        ("generate", "__end__", True),
        ("generate", "s:__start__", True),
        ("s:__start__", "s:analyze", False),
        ("s:analyze", "s:analyze", True),
        ("s:analyze", "s:gate", True),
        ("s:gate", "s:refine", True),
        ("s:gate", "s:__end__", True),
        ("s:refine", "s:__end__", False),
        ("s:__end__", "__end__", False),
    ]
    steps = [("generate", None), ("s:analyze", 0), ("s:analyze", 1), ("s:analyze", 0), ("s:gate", 0), ("s:gate", 1)]
    nodes, taken = taken_path(edges, [*steps, ("s:refine", 1)])
    assert ("s:analyze", "s:analyze") in taken and ("s:gate", "s:refine") in taken and ("s:gate", "s:__end__") in taken
    assert ("generate", "__end__") not in taken and "s:refine" in nodes
    _, failed = taken_path(edges, [("generate", None)])
    assert failed == {("__start__", "generate"), ("generate", "__end__")}


def test_a_corrupt_or_foreign_trace_is_one_error_and_the_rest_keeps_working(client):
    r = client.get("/api/run", params={"ref": "corrupt"})
    assert r.status_code == 422 and "corrupt" in r.json()["error"] and "\n" not in r.json()["error"]
    assert client.get("/api/run", params={"ref": "foreign"}).status_code == 422
    assert client.get("/api/run", params={"ref": "duet"}).status_code == 200


def test_media_of_a_run_by_hash_thumbnail_and_waveform(client, example):
    image = client.get("/api/media", params={"ref": "duet", "kind": "image"})
    assert image.status_code == 200 and image.content == example[0].read_bytes()
    assert image.headers["content-type"] == "image/png"
    assert client.get("/api/media", params={"ref": "duet", "kind": "audio"}).content == example[1].read_bytes()
    assert client.get("/api/thumb", params={"ref": "duet"}).content[:3] == b"\xff\xd8\xff"
    wave = client.get("/api/waveform", params={"ref": "duet"}).json()
    assert wave["duration_s"] == pytest.approx(3.0) and len(wave["min"]) == len(wave["max"]) == 600
    assert all(lo <= hi for lo, hi in zip(wave["min"], wave["max"]))


def test_an_input_changed_since_the_run_is_not_served(tmp_path, example):
    image, audio = tmp_path / "frame.png", tmp_path / "clip.wav"
    shutil.copy(example[0], image)
    shutil.copy(example[1], audio)
    folder = make_runs_one(tmp_path, image, audio)
    c = TestClient(create_app(Folder.open(folder), warm=False))
    assert c.get("/api/media", params={"ref": "one", "kind": "image"}).status_code == 200
    image.write_bytes(image.read_bytes() + b"x")  # same path, other content: not what the run saw
    assert c.get("/api/media", params={"ref": "one", "kind": "image"}).status_code == 404
    assert c.get("/api/run", params={"ref": "one"}).status_code == 200  # the run itself still shows


def make_runs_one(root: Path, image: Path, audio: Path, embed: bool = False) -> Path:
    media = load_media(image, audio)
    model = scripted(
        audio=[audio_answer(["violin"], [0.9])], generate=[boxes_answer([[38, 70, 128, 215]])], analyze=[vote()]
    )
    outcome = run_clip(media, Settings(n_votes=1), model, thread_id="one")
    topology, prompts = load_topology("gar"), PromptSet()
    write_trace(build_trace(outcome, media, topology, prompts), root / "traces", embed_media=embed)
    return root / "traces"


# --------------------------------------------------------------------------- safety and bad input


def test_paths_leaving_the_folder_are_404(runs, client, tmp_path, example):
    outside = make_runs_one(tmp_path / "elsewhere", *example[:2])  # a valid trace outside the root
    link = runs / "link-out"
    os.symlink(outside / "one", link)
    try:
        probes = ["..", "../..", "duet/../..", "duet/../../..", str(outside / "one"), "/etc/passwd", "link-out"]
        probes += [str(outside / "one" / "trace.json"), "duet/../../" + runs.name + "/duet", "C:/x", "duet\\..\\.."]
        for ref in probes:
            for path in ("/api/run", "/api/thumb", "/api/waveform"):
                r = client.get(path, params={"ref": ref})
                assert r.status_code == 404, (path, ref, r.status_code)
            assert client.get("/api/media", params={"ref": ref, "kind": "image"}).status_code == 404, ref
            assert client.get("/api/diff", params={"a": "duet", "b": ref}).status_code == 404, ref
        assert client.get("/api/run?ref=%2E%2E%2F%2E%2E").status_code == 404
        rows = {r["ref"]: r for r in client.get("/api/runs").json()["rows"]}  # the list still works
        assert "leads out of the served folder" in rows["link-out"]["error"] and "duet" in rows
        assert client.get("/api/../../etc/passwd").status_code == 404
    finally:
        link.unlink()


def test_an_embedded_copy_is_served_from_inside_the_folder(tmp_path, example):
    image, audio = tmp_path / "frame.png", tmp_path / "clip.wav"
    shutil.copy(example[0], image)
    shutil.copy(example[1], audio)
    folder = make_runs_one(tmp_path, image, audio, embed=True)
    image.unlink()  # only the copy beside the trace is left
    c = TestClient(create_app(Folder.open(folder), warm=False))
    assert c.get("/api/media", params={"ref": "one", "kind": "image"}).content == example[0].read_bytes()


def test_bad_queries_are_400_and_nothing_is_writable(client):
    for url in ("/api/runs?limit=abc", "/api/runs?limit=0", "/api/runs?offset=-1", "/api/run", "/api/diff?a=duet"):
        r = client.get(url)
        assert r.status_code == 400 and r.json()["error"], url
    assert client.get("/api/media", params={"ref": "duet", "kind": "passwd"}).status_code == 404
    assert client.get("/api/eval").status_code == 404  # not an evaluation folder
    for method in (client.post, client.put, client.delete):
        assert method("/api/run", params={"ref": "duet"}).status_code == 405


def test_serving_writes_nothing(runs, evaluation):
    before = snapshot(runs.parent), snapshot(evaluation)
    for folder in (runs, evaluation):
        c = TestClient(create_app(Folder.open(folder), warm=False))
        page = c.get("/api/runs").json()
        for row in page["rows"]:
            c.get("/api/run", params={"ref": row["ref"]})
            c.get("/api/thumb", params={"ref": row["ref"]})
            c.get("/api/waveform", params={"ref": row["ref"]})
        c.get("/")
        c.get("/api/eval")
        c.get("/api/samples?sort=ciou&desc=1")
    assert (snapshot(runs.parent), snapshot(evaluation)) == before


# --------------------------------------------------------------------------- evaluation and diff


def test_evaluation_metrics_gate_stats_and_sample_filters(evaluation):
    c = TestClient(create_app(Folder.open(evaluation), warm=False))
    ev = c.get("/api/eval").json()
    assert ev["metrics"] == json.loads((evaluation / "metrics.json").read_text())
    assert sorted(ev["ciou"]) == pytest.approx([1 / 3, 1.0])
    assert (ev["gate"]["refine"], ev["gate"]["skip"], ev["gate"]["tau_av"]) == (1, 1, 0.5)
    assert ev["gate"]["reasons"] == {"keep is false": 1, "av_consistency": 1}

    def ids(**q):
        return [r["id"] for r in c.get("/api/samples", params=q).json()["rows"]]

    assert ids() == ["a", "b", "c", "e"]
    assert ids(status="failed") == ["c", "e"] and ids(status="refined") == ["b"] and ids(status="skipped") == ["a"]
    assert ids(iou_min="0.5") == ["a"] and ids(iou_max="0.5") == ["b"] and ids(cls="violin") == ["b"]
    assert ids(sort="ciou", desc="1") == ["a", "b", "c", "e"] and ids(sort="ciou") == ["b", "a", "c", "e"]
    rows = {r["id"]: r for r in c.get("/api/samples").json()["rows"]}
    assert rows["c"]["trace"] == "traces/c" and rows["e"]["trace"] is None
    assert c.get("/api/samples?status=bogus").status_code == 400
    assert c.get("/api/samples?iou_min=high").status_code == 400
    doc = c.get("/api/run", params={"ref": "traces/a"}).json()
    assert doc["gt"] == [[56, 56, 167, 167]]  # the sample's GT, normalised xyxy back to pixels
    assert c.get("/api/thumb", params={"ref": "traces/a"}).status_code == 200  # the eval's overlay


def test_diff_is_what_gar_trace_diff_computes(client, runs):
    from gar_agent.rerun.diff import diff_traces

    d = client.get("/api/diff", params={"a": "single-skip", "b": "single-refined"}).json()
    expected = diff_traces(read_trace(runs / "single-skip"), read_trace(runs / "single-refined"))
    assert [tuple(x) for x in d["settings"]] == expected.settings and d["same"] is False
    assert [tuple(x) for x in d["decisions"]] == expected.decisions
    [box] = d["boxes"]
    assert box["iou"] == pytest.approx(expected.boxes[0][3]) and 0 < box["iou"] < 1
    assert client.get("/api/diff", params={"a": "duet", "b": "duet"}).json()["same"] is True


# --------------------------------------------------------------------------- export and the command


def test_export_writes_one_self_contained_file(runs, tmp_path, example, capsys):
    out = tmp_path / "duet.html"
    assert main(["view", "--export", str(out), str(runs / "duet")]) == 0
    html = out.read_text()
    assert "<script src" not in html and "http://" not in html.replace("http://www.w3.org", "")
    data = json.loads(html.split('<script type="application/json" id="gar-data">')[1].split("</script>")[0])
    assert data["run"]["run_id"] == "duet"
    assert data["media"]["image"] == "data:image/png;base64," + base64.b64encode(example[0].read_bytes()).decode()
    assert data["media"]["audio"].startswith("data:audio/wav;base64,") and len(data["waveform"]["min"]) == 600


def test_one_run_served_alone_by_folder_or_trace_file(runs):
    for path in (runs / "duet", runs / "duet" / "trace.json"):
        folder = Folder.open(path)
        assert folder.mode == "run" and folder.root == (runs / "duet").resolve()
        c = TestClient(create_app(folder, warm=False))
        assert [r["id"] for r in c.get("/api/runs").json()["rows"]] == ["duet"]
        assert c.get("/api/run", params={"ref": "."}).json()["run_id"] == "duet"
        assert c.get("/api/run", params={"ref": "../single-skip"}).status_code == 404  # a sibling is outside


def test_an_exported_evaluation_sample_carries_its_ground_truth(evaluation, tmp_path):
    out = tmp_path / "a.html"
    assert main(["view", "--export", str(out), str(evaluation / "traces" / "a")]) == 0
    data = json.loads(out.read_text().split('id="gar-data">')[1].split("</script>")[0])
    assert data["run"]["gt"] == [[56, 56, 167, 167]]
    assert all(
        {"kind": "gt", "source": None, "box": [56, 56, 167, 167], "label": "GT"} in s["boxes"]
        for s in data["run"]["steps"]
    )


def test_view_command_errors_are_one_line(runs, tmp_path, capsys):
    assert main(["view", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gar: error: ") and "does not exist" in err and err.count("\n") == 1
    assert main(["view", "--export", str(tmp_path / "x.html"), str(runs)]) == 2
    assert "is not one run" in capsys.readouterr().err
    assert main(["view", "--export", str(tmp_path / "x.html"), str(runs / "corrupt")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["view", "--export", str(tmp_path / "no" / "x.html"), str(runs / "duet")]) == 2
    assert main(["view", str(runs), "--port", "99999"]) == 2


def test_view_binds_to_localhost_and_prints_the_url(runs):
    proc = subprocess.Popen(
        [sys.executable, "-m", "gar_agent", "view", str(runs), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=TESTS,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        url = lines[1].split("serving at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1].strip("/")) > 0
        import urllib.error
        import urllib.request

        with urllib.request.urlopen(url + "api/info", timeout=10) as r:
            assert json.loads(r.read())["mode"] == "traces"
        # a page on another domain name resolved to 127.0.0.1 (DNS rebinding) is not answered
        rebound = urllib.request.Request(url + "api/runs", headers={"Host": "attacker.example"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(rebound, timeout=10)
        assert e.value.code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_export_of_a_run_whose_text_looks_like_the_template(tmp_path, example, capsys):
    """A description holding the page's placeholders or `</script>` stays data: the page still works."""
    hostile = "/*{{JS}}*/ {{DATA}} /*{{CSS}}*/ {{TITLE}} </script><script>window.pwned=1</script><!--"
    media = load_media(*example[:2])
    model = scripted(
        audio=[audio_answer(["violin"], [0.9])],
        generate=[json.dumps({"bbox": [38, 70, 128, 215], "description": hostile})],
        analyze=[vote()],
    )
    outcome = run_clip(media, Settings(n_votes=1), model, thread_id="hostile</title>")
    write_trace(build_trace(outcome, media, load_topology("gar"), PromptSet()), tmp_path / "traces")
    out = tmp_path / "h.html"
    assert main(["view", "--export", str(out), str(tmp_path / "traces" / "hostile</title>")]) == 0
    html = out.read_text()
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the data and the page's script only
    assert html.count("function h(tag, attrs") == 1 and "</title>" not in html.split("<title>")[1].split("</title>")[0]
    data = json.loads(html.split('id="gar-data">')[1].split("</script>")[0])
    [generate] = [s for s in data["run"]["steps"] if s["detail"]["kind"] == "generate"]
    assert generate["detail"]["sources"][0]["description"] == hostile


def test_a_huge_graph_is_drawn_capped_and_fast():
    from gar_agent.view.graph_svg import MAX_DRAWN, graph_svg

    nodes = ["__start__", *(f"n{i}" for i in range(8000)), "__end__"]
    edges = [(u, v, False) for u, v in zip(nodes, nodes[1:])] + [("__start__", f"n{i}", True) for i in range(8000)]
    t = time.perf_counter()
    svg = graph_svg(nodes, edges, set(), set())
    assert time.perf_counter() - t < 2.0  # was 36 s
    assert svg.count("<g class=") == MAX_DRAWN and "the graph has 8002 nodes" in svg and "7702 left out" in svg


def test_a_huge_frame_is_thumbnailed_at_reduced_size_and_a_bomb_not_at_all(tmp_path):
    import struct
    import zlib

    import cv2

    big = tmp_path / "big.jpg"
    img = np.zeros((6000, 8000, 3), np.uint8)
    img[1000:3000, 2000:5000] = 200
    cv2.imwrite(str(big), img)
    del img
    # a PNG whose header claims 40000 x 40000 pixels (4.8 GB decoded) with almost no data
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)))
    probe = (
        "import resource, sys, time; from pathlib import Path; from gar_agent.view.media import thumbnail\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; t = time.perf_counter()\n"
        "out = [thumbnail(Path(p)) for p in sys.argv[1:]]\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024, time.perf_counter() - t,"
        " *[-1 if o is None else len(o) for o in out])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    done = subprocess.run([sys.executable, "-c", probe, str(big), str(bomb)], capture_output=True, text=True, env=env)
    grown_mb, seconds, big_len, bomb_len = done.stdout.split()
    assert int(grown_mb) < 60, done.stdout  # decoding the 48-megapixel frame whole takes 144 MB
    assert float(seconds) < 2 and int(big_len) > 100 and int(bomb_len) == -1


def test_a_trace_is_parsed_once_for_parallel_requests_and_again_when_it_changes(runs, monkeypatch):
    import threading

    import gar_agent.view.index as index

    parsed = []
    real = index.read_trace

    def slow_read(path):
        parsed.append(path)
        time.sleep(0.3)  # a big trace: the other requests arrive while it is parsed
        return real(path)

    monkeypatch.setattr(index, "read_trace", slow_read)
    c = TestClient(create_app(Folder.open(runs), warm=False))
    answers = []
    threads = [
        threading.Thread(target=lambda u=u: answers.append(c.get(u, params={"ref": "duet"}).status_code))
        for u in ("/api/run", "/api/run", "/api/thumb", "/api/waveform")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 4 and len(parsed) == 1
    assert c.get("/api/run", params={"ref": "corrupt"}).status_code == 422
    assert c.get("/api/run", params={"ref": "corrupt"}).status_code == 422 and len(parsed) == 2  # errors kept too
    trace_file = runs / "duet" / "trace.json"
    st = trace_file.stat()
    os.utime(trace_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # "changed": read again
    assert c.get("/api/run", params={"ref": "duet"}).status_code == 200 and len(parsed) == 3


def test_host_allow_list_is_kept_on_every_interface(runs):
    import socket
    import urllib.error
    import urllib.request

    from gar_agent.view.hosts import allowed_hosts, is_loopback

    for host in ("0.0.0.0", "127.0.0.2", "::", "192.168.1.7"):
        names = allowed_hosts(host, ["Lab.Example"])
        assert "*" not in names and {"localhost", "127.0.0.1", "[::1]", "lab.example"} <= set(names)
        assert socket.gethostname().lower() in names and "0.0.0.0" not in names and "[::]" not in names
    assert "127.0.0.2" in allowed_hosts("127.0.0.2") and "192.168.1.7" in allowed_hosts("192.168.1.7")
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")

    proc = subprocess.Popen(
        [sys.executable, "-m", "gar_agent", "view", str(runs), "--port", "0", "--host", "0.0.0.0"]
        + ["--allow-host", "lab.example"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=TESTS,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        port = int(lines[1].split("serving at ")[1].split()[0].rsplit(":", 1)[1].strip("/"))
        warning = proc.stderr.readline()
        assert "warning: --host 0.0.0.0 serves the runs" in warning and "lab.example" in warning

        def get(host_header: str) -> int:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/info", headers={"Host": host_header})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    info = json.loads(r.read())
                    assert info["path"] == info["root"] == runs.name  # not the absolute path
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert get("attacker.example") == 400 and get(f"attacker.example:{port}") == 400
        assert get(f"localhost:{port}") == get("lab.example") == get(socket.gethostname()) == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- one parent folder of everything


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, runs, evaluation) -> Path:
    return make_mixed(tmp_path_factory.mktemp("view-mixed"), runs, evaluation)


def test_a_parent_folder_shows_its_runs_evaluations_and_sweeps(mixed):
    c = TestClient(create_app(Folder.open(mixed), warm=False))
    assert c.get("/api/info").json()["mode"] == "traces"
    runs = {r["ref"] for r in c.get("/api/runs").json()["rows"]}
    assert {"traces/duet", "traces/single-skip", "traces/corrupt"} <= runs  # was an empty list
    assert not any(r.startswith(("eval-tau05/", "evals/")) for r in runs)  # evaluation runs: on their page
    evals = {e["ref"]: e for e in c.get("/api/evals").json()["rows"]}
    assert set(evals) == {"eval-tau05", "evals/swept"}
    assert evals["evals/swept"]["sweep"] is True and evals["eval-tau05"]["sweep"] is False
    assert evals["eval-tau05"]["dataset"] == "vggss-single" and evals["eval-tau05"]["n_samples"] == 4
    ev = c.get("/api/eval", params={"ref": "evals/swept"}).json()
    assert [(s["tau_av"], s["tau_audio"]) for s in ev["sweep"]["settings"]] == [(0.3, 0.75), (0.5, 0.75)]
    assert c.get("/api/eval", params={"ref": "eval-tau05"}).json()["sweep"] is None
    rows = {r["id"]: r for r in c.get("/api/samples", params={"ref": "eval-tau05"}).json()["rows"]}
    assert rows["a"]["trace"] == "eval-tau05/traces/a"
    doc = c.get("/api/run", params={"ref": "eval-tau05/traces/a"}).json()
    assert doc["gt"] == [[56, 56, 167, 167]] and doc["sample"]["ciou"] == pytest.approx(1.0)
    assert c.get("/api/thumb", params={"ref": "eval-tau05/traces/a"}).status_code == 200
    for bad in ("traces", "..", "eval-tau05/../..", "nowhere"):
        assert c.get("/api/eval", params={"ref": bad}).status_code == 404, bad
    assert c.get("/api/eval").status_code == 404  # the parent itself is no evaluation


def test_runs_list_tells_runs_apart_by_tau_classes_and_status(client):
    rows = {r["ref"]: r for r in client.get("/api/runs").json()["rows"]}
    skip, refined = rows["single-skip"], rows["single-refined"]
    assert (skip["tau_av"], refined["tau_av"]) == (0.5, 0.7) and skip["tau_audio"] == 0.75
    assert skip["classes"] == ["violin"] and rows["duet"]["classes"] == ["violin", "drum"]
    assert (skip["status"], refined["status"], rows["failed"]["status"]) == ("skipped", "refined", "failed")
    assert rows["duet"]["status"] == "1 skipped, 1 refined"
    assert skip["image"] == "frame.png" or skip["image"].endswith(".png")


def test_a_sample_with_nan_is_null_not_a_500(evaluation, tmp_path):
    folder = tmp_path / "ev"
    shutil.copytree(evaluation, folder)
    sample = folder / "samples" / "a.json"
    sample.write_text(sample.read_text().replace('"ciou":1.0', '"ciou":NaN', 1))
    (folder / "metrics.json").write_text('{"auc": NaN, "ciou@0.5": 0.5}')
    c = TestClient(create_app(Folder.open(folder), warm=False))
    r = c.get("/api/samples")
    assert r.status_code == 200 and {x["id"]: x for x in r.json()["rows"]}["a"]["ciou"] is None
    ev = c.get("/api/eval").json()
    assert ev["metrics"] == {"auc": None, "ciou@0.5": 0.5}


def test_a_video_run_is_named_by_its_video_and_time(runs, tmp_path):
    doc = json.loads((runs / "duet" / "trace.json").read_text())
    doc["inputs"]["video"] = {"path": "/clips/concert.mp4", "sha256": "0" * 64, "size": 10, "at_s": 12.5}
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "trace.json").write_text(json.dumps(doc))
    [row] = TestClient(create_app(Folder.open(tmp_path), warm=False)).get("/api/runs").json()["rows"]
    assert row["image"] == "concert.mp4 @ 12.5 s"


# --------------------------------------------------------------------------- the recorded graph source


def test_the_run_document_shows_the_recorded_graph_source_and_its_diff(example, tmp_path, capsys):
    from gar_agent.paths import GRAPHS_DIR

    client = TestClient(create_app(Folder.open(make_graph_runs(tmp_path, example)), warm=False))
    capsys.readouterr()
    shipped = client.get("/api/run", params={"ref": "shipped"}).json()["graph_source"]
    assert shipped["source"] == (GRAPHS_DIR / "gar.py").read_text()
    assert shipped["shipped"] == {"name": "gar", "file": "gar_agent/graphs/gar.py", "same": True}
    assert "diff" not in shipped
    edited = client.get("/api/run", params={"ref": "edited"}).json()["graph_source"]
    assert edited["name"] == "gar" and edited["source"].endswith(EDIT) and edited["shipped"]["same"] is False
    # the unified diff from the recorded file to ours: the edit is a line ours lacks
    assert edited["diff"].startswith("--- recorded gar (") and "+++ shipped gar_agent/graphs/gar.py" in edited["diff"]
    assert "\n-" + EDIT in edited["diff"]
    # a trace without a spec (built in memory, as older traces are) says so instead of showing nothing
    older = TestClient(create_app(Folder.open(make_runs(tmp_path / "older", example)), warm=False))
    gs = older.get("/api/run", params={"ref": "duet"}).json()["graph_source"]
    assert gs["source"] is None and "recorded no graph source" in gs["missing"]
