"""`gar view` in a real headless browser: Playwright driving Debian's Chromium.

The server runs in a thread on a free port over folders the suite makes (tests/view_folders.py):
runs are clicked through step by step and the boxes drawn and gate values shown are compared with
the trace itself; a diff is opened, an evaluation filtered, and an exported run opened with no
server at all. Screenshots of the main views go to out/screenshots/ (git-ignored) for a person.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="pytest-playwright is not installed: pip install -e '.[dev,view]'")
pytest.importorskip("starlette", reason="the viewer's extra is not installed: pip install -e '.[view]'")

import uvicorn  # noqa: E402
from view_folders import EDIT, make_eval, make_graph_runs, make_runs  # noqa: E402

from gar_agent.cli.app import main  # noqa: E402
from gar_agent.rerun.diff import diff_traces  # noqa: E402
from gar_agent.trace.store import read_trace  # noqa: E402
from gar_agent.view.index import Folder  # noqa: E402
from gar_agent.view.server import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on this machine (apt-get install -y --no-install-recommends chromium): browser tests skipped",
)
SHOTS = Path(__file__).resolve().parents[1] / "out" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Launch Debian's Chromium: Playwright cannot download its own browser here."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ["--disable-dev-shm-usage"]}


def shot(page, name: str) -> None:
    """A full-page screenshot for a person to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@contextlib.contextmanager
def serving(folder: Path):
    """`gar view FOLDER` in a thread on a free port of 127.0.0.1; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_app(Folder.open(folder)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, example) -> Path:
    return make_runs(tmp_path_factory.mktemp("view-browser"), example)


@pytest.fixture(scope="module")
def url(runs):
    with serving(runs) as u:
        yield u


# --------------------------------------------------------------------------- expected values, from the trace


def boxes_after_each_step(trace) -> list[dict[int, list[int]]]:
    """Each source's box after each step, read off the states the steps wrote."""
    now: dict[int, list[int]] = {}
    out = []
    for step in trace.steps:
        for record in step.state.get("sources") or []:
            now[record["index"]] = record["initial_box"] if step.node == "generate" else record["box"]
        out.append(dict(now))
    return out


def drawn(page, kind: str) -> dict[int, list[int]]:
    """The boxes of one kind drawn on the frame, by source."""
    out = {}
    for rect in page.locator(f"[data-testid=frame] rect.box.{kind}").all():
        out[int(rect.get_attribute("data-source"))] = [int(v) for v in rect.get_attribute("data-box").split(",")]
    return out


# --------------------------------------------------------------------------- tests


def test_runs_list_with_error_cards_and_filter(page, url):
    page.goto(url + "#/runs")
    page.wait_for_selector("[data-testid=runs]")
    assert page.locator("tr[data-ref]").count() == 6
    cards = page.locator("[data-testid=runs] [data-testid=error-card]")
    assert cards.count() == 2 and "not a gar trace" in " ".join(cards.all_inner_texts())
    duet = page.locator("tr[data-ref=duet]")
    assert "[38, 70, 128, 215] [190, 80, 318, 205]" in duet.inner_text() and "gar" in duet.inner_text()
    page.wait_for_function(  # the thumbnail, served by the API, decodes as an image
        "() => { const i = document.querySelector('tr[data-ref=duet] img.thumb'); return i.complete && i.naturalWidth > 0; }"
    )
    shot(page, "runs")
    page.fill("[data-testid=runs-filter]", "refined")  # the status column: one run refined, the duet half
    page.wait_for_function("document.querySelectorAll('tr[data-ref]').length === 2")
    assert set(page.locator("tr[data-ref]").evaluate_all("rs => rs.map(r => r.dataset.ref)")) == {
        "single-refined",
        "duet",
    }
    page.fill("[data-testid=runs-filter]", "drum")  # an audio class
    page.wait_for_function("document.querySelectorAll('tr[data-ref]').length === 1")
    assert page.locator("tr[data-ref]").get_attribute("data-ref") == "duet"


def test_clicking_through_a_duet_draws_the_trace_boxes_and_gate_values(page, url, runs):
    trace = read_trace(runs / "duet")
    expected = boxes_after_each_step(trace)
    page.goto(url + "#/run/duet")
    page.wait_for_selector("[data-testid=timeline]")
    assert page.locator("[data-testid=run-id]").inner_text() == "duet"
    page.wait_for_selector("[data-testid=waveform] path")  # fetched after the page is drawn
    for i, step in enumerate(trace.steps):
        page.click(f"[data-step='{i}']")
        page.wait_for_function(
            f"document.querySelector('[data-testid=step-title]').textContent.startsWith('step {i} ')"
        )
        assert drawn(page, "current") == expected[i], f"step {i} ({step.node})"
        assert drawn(page, "initial") == {s.index: s.initial_box for s in trace.final_state.sources}
        graph_node = page.locator("[data-testid=graph] .node.current").get_attribute("data-node")
        assert graph_node.split(":")[-1] == step.node
        if step.node == "gate":
            gate = step.state["sources"][0]["gate"]
            for name in ("keep", "av_consistency", "audio_confidence", "tau_av", "tau_audio"):
                cell = page.locator(f"[data-testid=gate] [data-gate={name}]")
                assert json.loads(cell.get_attribute("data-value")) == gate[name], name
            av = page.locator("[data-testid=gate] td[data-gate=av_consistency]").inner_text()
            assert float(av) == pytest.approx(gate["av_consistency"], abs=1e-4)
            decision = page.locator("[data-gate=decision]").inner_text()
            assert decision == ("refine" if gate["refine"] else "skip refinement")
            if gate["refine"]:
                shot(page, "run-gate")
        if step.node == "refine":
            refinement = step.state["sources"][0]["refinement"]
            assert drawn(page, "previous") == {step.source: refinement["previous_box"]}
            assert page.locator("[data-refine='clamp ±px']").inner_text() == str(refinement["max_delta"])
            assert page.locator("[data-testid=raw-answer]").first.inner_text() == step.calls[0].answers[0]
            shot(page, "run-refine")
    page.click("[data-step=final]")
    assert drawn(page, "final") == {s.index: s.box for s in trace.final_state.sources}
    # the path taken: both gate exits (one source skipped, one refined) are highlighted
    taken = page.locator("[data-testid=graph] path.taken").evaluate_all("ps => ps.map(p => p.dataset.edge)")
    assert {"localize:gate->localize:refine", "localize:gate->localize:__end__"} <= set(taken)
    assert "generate->__end__" not in taken


def test_a_corrupt_run_shows_one_error_card_and_the_app_keeps_working(page, url):
    page.goto(url + "#/run/corrupt")
    card = page.wait_for_selector("[data-testid=error-card]")
    assert "corrupt" in card.inner_text()
    shot(page, "run-corrupt")
    page.click("nav a[href='#/runs']")
    page.wait_for_selector("tr[data-ref=duet]")


def test_a_failed_run_says_why(page, url):
    page.goto(url + "#/run/failed")
    page.wait_for_selector("[data-testid=timeline]")
    assert "the run failed" in page.locator("[data-testid=error-card]").first.inner_text()


def test_diff_of_two_runs_from_the_list(page, url, runs):
    page.goto(url + "#/runs")
    page.check("[data-pick=single-skip]")
    page.check("[data-pick=single-refined]")
    page.click("[data-testid=diff-button]")
    page.wait_for_selector("[data-testid=diff-boxes]")
    d = diff_traces(read_trace(runs / "single-refined"), read_trace(runs / "single-skip"))
    d2 = diff_traces(read_trace(runs / "single-skip"), read_trace(runs / "single-refined"))
    iou = page.locator("[data-iou='0']").inner_text()
    assert iou == f"{d.boxes[0][3]:.3f}" == f"{d2.boxes[0][3]:.3f}"
    changed = page.locator("[data-testid=diff-settings-changed]").inner_text()
    assert "tau_av" in changed and "n_votes" not in changed  # both ran N=3
    assert page.locator("[data-testid=diff-decisions]").inner_text().count("source 0") >= 1
    assert page.locator("[data-testid=diff-a] rect.final").count() == 1
    shot(page, "diff")


def test_evaluation_filters_sorts_and_opens_a_trace(page, tmp_path_factory):
    folder = make_eval(tmp_path_factory.mktemp("view-browser-eval"))
    metrics = json.loads((folder / "metrics.json").read_text())
    with serving(folder) as u:
        page.goto(u)
        page.wait_for_selector("[data-testid=samples]")
        assert page.locator("[data-metric='ciou@0.5']").inner_text() == f"{100 * metrics['ciou@0.5']:.1f}"
        assert page.locator("[data-metric=n_failed]").inner_text() == str(metrics["n_failed"])
        counts = page.locator("[data-testid=iou-hist] rect.bar").evaluate_all("rs => rs.map(r => +r.dataset.count)")
        assert sum(counts) == 2 and counts[-1] == 1 and counts[6] == 1  # cIoU 1 and 1/3
        shot(page, "eval")

        def sample_ids():
            return page.locator("tr[data-sample]").evaluate_all("rs => rs.map(r => r.dataset.sample)")

        def wait_ids(ids):
            page.wait_for_function(
                "ids => JSON.stringify([...document.querySelectorAll('tr[data-sample]')].map(r => r.dataset.sample)) === JSON.stringify(ids)",
                arg=ids,
            )

        assert sample_ids() == ["a", "b", "c", "e"]
        page.select_option("[data-testid=filter-status]", "failed")
        wait_ids(["c", "e"])
        page.select_option("[data-testid=filter-status]", "refined")
        wait_ids(["b"])
        page.select_option("[data-testid=filter-status]", "")
        wait_ids(["a", "b", "c", "e"])
        page.fill("[data-testid=filter-iou_min]", "0.5")
        page.press("[data-testid=filter-iou_min]", "Enter")
        wait_ids(["a"])
        page.fill("[data-testid=filter-iou_min]", "")
        page.press("[data-testid=filter-iou_min]", "Enter")
        wait_ids(["a", "b", "c", "e"])
        page.fill("[data-testid=filter-cls]", "violin")
        page.press("[data-testid=filter-cls]", "Enter")
        wait_ids(["b"])
        page.fill("[data-testid=filter-cls]", "")
        page.press("[data-testid=filter-cls]", "Enter")
        wait_ids(["a", "b", "c", "e"])
        page.click("th[data-sort=ciou]")
        wait_ids(["b", "a", "c", "e"])  # ascending; samples without a cIoU last
        page.click("th[data-sort=ciou]")
        wait_ids(["a", "b", "c", "e"])
        shot(page, "eval-sorted")
        page.click("tr[data-sample=a] [data-testid=sample-link]")
        page.wait_for_selector("[data-testid=timeline]")
        gt = page.locator("[data-testid=frame] rect.box.gt").get_attribute("data-box")
        assert gt == "56,56,167,167"
        shot(page, "eval-sample")


def test_an_exported_run_opens_with_no_server(page, runs, tmp_path):
    out = tmp_path / "duet.html"
    assert main(["view", "--export", str(out), str(runs / "duet")]) == 0  # no server is running
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_selector("[data-testid=timeline]")
    assert page.locator("[data-testid=run-id]").inner_text() == "duet"
    href = page.locator("[data-testid=frame] image").get_attribute("href")
    assert href.startswith("data:image/png;base64,")
    assert page.locator("audio").get_attribute("src").startswith("data:audio/wav;base64,")
    assert page.locator("[data-testid=waveform]").count() == 1
    trace = read_trace(runs / "duet")
    gate_step = next(s for s in trace.steps if s.node == "gate")
    page.click(f"[data-step='{gate_step.index}']")
    value = page.locator("[data-testid=gate] td[data-gate=av_consistency]").get_attribute("data-value")
    assert json.loads(value) == gate_step.state["sources"][0]["gate"]["av_consistency"]
    assert all(r.startswith(("file:", "data:")) for r in requests), requests
    shot(page, "export")


def test_runs_list_shows_tau_classes_and_status(page, url):
    page.goto(url + "#/runs")
    page.wait_for_selector("tr[data-ref=duet]")

    def cell(ref: str, col: str) -> str:
        return page.locator(f"tr[data-ref='{ref}'] td[data-col={col}]").inner_text().strip()

    # two runs that differ only in their gate threshold no longer look alike
    assert (cell("single-skip", "tau"), cell("single-refined", "tau")) == ("0.5 / 0.75", "0.7 / 0.75")
    assert (cell("single-skip", "status"), cell("single-refined", "status")) == ("skipped", "refined")
    assert cell("duet", "classes") == "violin, drum" and cell("duet", "n") == "2"
    assert cell("failed", "status") == "failed"
    headers = page.locator("[data-testid=runs] th").all_inner_texts()
    assert {"tau_av / tau_audio", "audio classes", "status"} <= set(headers)


def test_a_parent_folder_lists_runs_and_evaluations_and_shows_a_sweep(page, tmp_path_factory, runs, example):
    from view_folders import make_mixed

    root = tmp_path_factory.mktemp("view-browser-mixed")
    mixed = make_mixed(root, runs, make_eval(root / "e"))
    with serving(mixed) as u:
        page.goto(u)
        page.wait_for_selector("[data-testid=evals]")
        assert page.locator("tr[data-eval]").evaluate_all("rs => rs.map(r => r.dataset.eval)") == [
            "eval-tau05",
            "evals/swept",
        ]
        assert "sweep" in page.locator("tr[data-eval='evals/swept']").inner_text()
        assert page.locator("tr[data-ref='traces/duet']").count() == 1  # runs of traces/ beside them
        shot(page, "mixed")
        page.click("tr[data-eval='evals/swept'] [data-testid=eval-link]")
        page.wait_for_selector("[data-testid=sweep]")
        assert page.locator("tr[data-sweep]").evaluate_all("rs => rs.map(r => r.dataset.sweep)") == [
            "0.3/0.75/5",
            "0.5/0.75/5",
        ]
        # the histogram: a count over each non-empty bar, and a count axis
        labels = page.locator("[data-testid=iou-hist] text[data-count-label]")
        assert labels.evaluate_all("ts => ts.map(t => [+t.dataset.countLabel, t.textContent])") == [[6, "1"], [19, "1"]]
        texts = page.locator("[data-testid=iou-hist] text").evaluate_all("ts => ts.map(t => t.textContent)")
        assert {"0", "1", "0.0", "1.0", "cIoU", "samples"} <= set(texts)  # both axes, labelled
        shot(page, "eval-sweep")
        page.click("tr[data-sample=b] [data-testid=sample-link]")
        page.wait_for_selector("[data-testid=timeline]")
        ciou = json.loads((mixed / "evals" / "swept" / "samples" / "b.json").read_text())["ciou"]
        assert float(page.locator("[data-testid=sample-ciou]").inner_text()) == pytest.approx(ciou, abs=1e-4)
        assert page.locator("[data-testid=frame] rect.box.gt").count() == 1


def test_the_run_page_shows_the_recorded_graph_source_as_text_and_its_diff(page, tmp_path_factory, example):
    from gar_agent.paths import GRAPHS_DIR

    traces = make_graph_runs(tmp_path_factory.mktemp("graph-source"), example)
    with serving(traces) as u:
        page.goto(u + "#/run/edited")
        panel = page.wait_for_selector("[data-testid=graph-source]")
        assert panel.get_attribute("open") is not None  # it differs from ours: opened
        verdict = page.locator("[data-testid=graph-source-verdict]").inner_text()
        assert verdict == "differs from the shipped gar_agent/graphs/gar.py"
        removed = page.locator("[data-testid=graph-source-diff] .del").all_inner_texts()
        assert removed == ["-" + EDIT]  # the recorded line ours lacks, marked as such (the headers are not)
        # the recorded source, character for character, as text: its <script> is neither markup nor run
        shown = page.locator("[data-testid=graph-source-text]").inner_text()
        assert shown == (GRAPHS_DIR / "gar.py").read_text() + EDIT
        assert page.locator("[data-testid=graph-source] script").count() == 0
        assert page.evaluate("window.pwned") is None
        shot(page, "run-graph-source")
        page.goto(u + "#/run/shipped")
        page.wait_for_function(
            "document.querySelector('[data-testid=graph-source-verdict]')?.textContent.startsWith('the same')"
        )
        verdict = page.locator("[data-testid=graph-source-verdict]").inner_text()
        assert verdict == "the same as the shipped gar_agent/graphs/gar.py"
        assert page.locator("[data-testid=graph-source]").get_attribute("open") is None
        assert page.locator("[data-testid=graph-source-diff]").count() == 0
