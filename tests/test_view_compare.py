"""The viewer's comparison of two evaluations (`/compare?a=&b=`, `/api/compare`): its API over a
collection folder, and the page in Chromium: metrics with intervals, the cIoU scatter, the changed
samples, and a changed sample opening the side-by-side diff of its two runs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the viewer's extra is not installed: pip install -e '.[view]'")

from benchmarks import ENTRIES, make_benchmark  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from gar_agent.cli.app import main  # noqa: E402
from gar_agent.eval.compare import compare_folders  # noqa: E402
from gar_agent.view.index import Folder  # noqa: E402
from gar_agent.view.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """A folder holding three evaluations: `src` (tau_av 0.5), `strict` (its replay at tau_av 0.7), `solo`
    (another benchmark)."""
    root = tmp_path_factory.mktemp("compare")
    frames, audio, gt = make_benchmark(root / "data", "vggss-single", ENTRIES)
    data = ["--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt]
    runs = root / "runs"
    backend = ["--backend", "test_eval_replay:VaryModel"]
    assert main([str(a) for a in ["eval", "run", *data, *backend, "--out", runs / "src"]]) == 0
    assert (
        main([str(a) for a in ["eval", "replay", runs / "src", "--out", runs / "strict", "--tau-av", "0.7", *backend]])
        == 0
    )
    f2, a2, g2 = make_benchmark(root / "solo", "music-solo", ENTRIES[:2])
    solo = ["--dataset", "music-solo", "--frames", f2, "--audio", a2, "--gt", g2, *backend, "--out", runs / "solo"]
    assert main([str(a) for a in ["eval", "run", *solo]]) == 0
    return runs


def test_the_compare_api_is_gar_eval_compare_inside_the_served_root(collection):
    client = TestClient(create_app(Folder.open(collection), warm=False))
    doc = client.get("/api/compare", params={"a": "src", "b": "strict"}).json()
    want = compare_folders([collection / "src", collection / "strict"], points=True)["comparisons"][0]
    assert doc["metrics"] == want["metrics"] and doc["n_paired"] == 7
    assert sorted(r["id"] for r in doc["changed"]) == ["s3", "s4", "s5"]
    assert doc["changed"][0]["diff"] == [
        "src/traces/" + doc["changed"][0]["id"],
        "strict/traces/" + doc["changed"][0]["id"],
    ]
    assert len(doc["points"]) == 7
    r = client.get("/api/compare", params={"a": "src", "b": "solo"})
    assert r.status_code == 422 and "same benchmark" in r.json()["error"] and str(collection) not in r.json()["error"]
    assert client.get("/api/compare", params={"a": "src", "b": "../etc"}).status_code == 404
    assert client.get("/api/compare", params={"a": "src", "b": "src/samples"}).status_code == 404
    assert client.get("/api/compare", params={"a": "src"}).status_code == 400
    assert "compare.js" not in client.get("/compare").text and "api/compare" in client.get("/compare").text


chromium = pytest.importorskip("test_view_browser", reason="the browser tests' helpers need playwright")
browser_type_launch_args = chromium.browser_type_launch_args  # Debian's Chromium, as the other browser tests


@pytest.mark.skipif(chromium.CHROMIUM is None, reason="no chromium on this machine")
def test_the_compare_page_shows_intervals_the_scatter_and_opens_a_changed_samples_diff(page, collection):
    want = compare_folders([collection / "src", collection / "strict"], points=True)["comparisons"][0]
    with chromium.serving(collection) as url:
        page.goto(url + "compare?a=src&b=strict")
        page.wait_for_selector("[data-testid=compare-metrics]")
        for m in want["metrics"]:
            row = page.locator(f"tr[data-metric='{m['metric']}']")
            assert row.locator("[data-col=a]").inner_text() == f"{100 * m['a']:.1f}"
            lo, hi = (f"{'+' if v > 0 else ''}{100 * v:.1f}" for v in m["ci95"])
            assert row.locator("[data-col=ci]").inner_text() == f"[{lo}, {hi}]"
        dots = page.locator("[data-testid=scatter] circle")
        assert dots.count() == 7
        moved = page.locator("[data-testid=scatter] circle.up, [data-testid=scatter] circle.down")
        assert sorted(moved.evaluate_all("cs => cs.map(c => c.dataset.sample)")) == ["s3", "s4", "s5"]
        cx = float(page.locator("[data-testid=scatter] circle[data-sample=s3]").get_attribute("data-a"))
        assert cx == pytest.approx(next(p[1] for p in want["points"] if p[0] == "s3"))
        rows = page.locator("[data-testid=changed] tr[data-sample]").evaluate_all("rs => rs.map(r => r.dataset.sample)")
        assert rows == [e["id"] for e in want["changed"]]
        assert page.locator("[data-testid=by-gate] tr[data-group='skipped -> refined'] td").nth(1).inner_text() == "3"
        assert "3 only in B" not in page.locator("main").inner_text()
        chromium.shot(page, "compare")
        page.click("tr[data-sample=s3] [data-testid=diff-link]")
        page.wait_for_selector("[data-testid=diff-boxes]")
        assert "strict/traces/s3" in page.url.replace("%2F", "/")
        assert page.locator("[data-testid=diff-a] rect.final").count() == 1
        chromium.shot(page, "compare-diff")
        # folders of two benchmarks: one error card, and the pickers still work
        page.goto(url + "compare?a=src&b=solo")
        page.wait_for_selector("[data-testid=error]")
        assert "same benchmark" in page.locator("[data-testid=error]").inner_text()
        page.select_option("[data-testid=pick-b]", "strict")
        page.click("[data-testid=pick-go]")
        page.wait_for_selector("[data-testid=compare-metrics]")


@pytest.mark.skipif(chromium.CHROMIUM is None, reason="no chromium on this machine")
def test_two_evaluations_picked_in_the_folder_list_open_their_comparison(page, collection):
    with chromium.serving(collection) as url:
        page.goto(url)
        page.wait_for_selector("[data-testid=evals]")
        button = page.locator("[data-testid=compare-button]")
        assert button.is_disabled()
        page.check("[data-pick-eval=src]")
        assert button.is_disabled()  # one evaluation is nothing to compare
        page.check("[data-pick-eval=strict]")
        button.click()
        page.wait_for_selector("[data-testid=compare-metrics]")
        assert "compare?a=src&b=strict" in page.url
