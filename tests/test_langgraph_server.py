"""The graphs run from LangGraph's own server (`langgraph dev`, what Studio talks to) on a run configuration."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sdk = pytest.importorskip("langgraph_sdk", reason="langgraph-cli[inmem] (the dev extra) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("the langgraph CLI is not installed")
    # the project's own langgraph.json, with paths made absolute so the server's files stay in tmp_path
    spec = json.loads((ROOT / "langgraph.json").read_text())
    spec["dependencies"] = [str(ROOT)]
    spec["graphs"] = {k: str(ROOT / v.removeprefix("./")) for k, v in spec["graphs"].items()}
    (tmp_path / "langgraph.json").write_text(json.dumps(spec))
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [cli, "dev", "--port", str(port), "--no-browser", "--no-reload", "--config", "langgraph.json"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = sdk.get_sync_client(url=f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.assistants.search(limit=1)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("langgraph dev did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
    client.url = f"http://127.0.0.1:{port}"  # the README block's test connects its own client
    yield client
    proc.terminate()
    proc.wait(timeout=20)


def test_a_run_over_the_server_api_completes_and_its_state_is_readable(server, example):
    image, audio, script = example
    names = {a["graph_id"] for a in server.assistants.search(limit=20)}
    assert {"gar", "adaptive", "no_gate", "no_analysis", "generate_only"} <= names
    thread = server.threads.create()
    context = {"backend": f"scripted:{script}", "image": str(image), "audio": str(audio)}
    server.runs.wait(thread["thread_id"], "gar", input={"settings": {"sources": 2, "n_votes": 3}}, context=context)
    values = server.threads.get_state(thread["thread_id"])["values"]
    assert values.get("error") is None, values.get("error")
    assert values["image"]["path"] == str(image)  # filled from the run configuration's media
    sources = values["sources"]
    assert [s["index"] for s in sources] == [0, 1]
    assert all(s["analysis"]["n_votes"] == 3 and s["gate"] is not None for s in sources)
    assert all(len(s["box"]) == 4 for s in sources)


def test_a_fork_from_a_checkpoint_over_the_server_reruns_with_the_original_answers(server, example):
    """Time travel as Studio does it: edit the sources and a setting at the checkpoint after Generate
    (their JSON form, as the API carries them), re-run from there; the scripted answers are served again."""
    image, audio, script = example
    thread = server.threads.create()["thread_id"]
    context = {"backend": f"scripted:{script}", "image": str(image), "audio": str(audio)}
    server.runs.wait(thread, "gar", input={"settings": {"sources": 2, "n_votes": 3}}, context=context)
    original = server.threads.get_state(thread)["values"]["sources"]
    after_generate = next(h for h in server.threads.get_history(thread, limit=50) if "localize" in h["next"])
    edited = after_generate["values"]["sources"]
    edited[0]["initial_box"] = edited[0]["box"] = [40, 72, 126, 210]
    settings = {**after_generate["values"]["settings"], "tau_av": 0.7}
    fork = server.threads.update_state(
        thread,
        {"sources": edited, "settings": settings},
        as_node="generate",
        checkpoint_id=after_generate["checkpoint"]["checkpoint_id"],
    )
    server.runs.wait(thread, "gar", input=None, context=context, checkpoint_id=fork["checkpoint"]["checkpoint_id"])
    values = server.threads.get_state(thread)["values"]
    assert values.get("error") is None, values.get("error")
    rerun = values["sources"]
    assert rerun[0]["initial_box"] == [40, 72, 126, 210]
    assert [s["gate"]["tau_av"] for s in rerun] == [0.7, 0.7]
    # the same votes as the original run, so the same mean av_consistency
    assert [[v["raw"] for v in s["votes"]] for s in rerun] == [[v["raw"] for v in s["votes"]] for s in original]
    assert [s["analysis"]["av_consistency"] for s in rerun] == [s["analysis"]["av_consistency"] for s in original]


def test_the_readme_sdk_block_runs_against_the_server(server, example, tmp_path):
    """The README's langgraph_sdk example, as written, with the server's URL and the demo's paths put in."""
    import re

    text = (ROOT / "README.md").read_text()
    match = re.search(r"## LangGraph server \(`langgraph dev`\).*?\n```python\n(.*?)```", text, re.S)
    assert match, "README.md has no langgraph_sdk python block"
    image, audio, script = example
    block = match.group(1)
    for old, new in (
        ("http://127.0.0.1:2024", server.url),
        ("out/demo/demo_script.json", str(script)),
        ("out/demo/demo.png", str(image)),
        ("out/demo/demo.wav", str(audio)),
    ):
        assert old in block
        block = block.replace(old, new)
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    nodes = [line.split()[1] for line in lines if line.startswith("node ")]
    assert nodes[0] == "generate" and "localize" in nodes  # streamed in order
    assert lines[-2].startswith("boxes [[") and lines[-1] == "fork [40, 72, 126, 210] [0.7, 0.7]"
