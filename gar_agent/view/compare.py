"""The viewer's comparison of two evaluations of a collection: `/compare?a=REF&b=REF` and `/api/compare`.

`gar view DIR`, where DIR holds evaluation folders, serves a page with each metric and B-A with its
paired bootstrap 95% interval, McNemar on the cIoU@0.5 hits, a scatter of every paired sample's cIoU
(A across, B up), the changes summarised by gate decision and class, and the changed samples, each
opening the side-by-side diff of its two runs (the main page's `#/diff/A/B`). The numbers are
`gar eval compare`'s (gar_agent.eval.compare); this module only names folders inside the served root,
caches the result while the folders are unchanged, and fills the page.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gar_agent.eval.compare import CompareError, compare_folders
from gar_agent.eval.store import SettingsMismatch
from gar_agent.view.index import Folder, ViewError
from gar_agent.view.page import _asset, _script_safe

RESAMPLES = 10_000
CHANGED_SHOWN = 500  # the page lists the largest changes; the scatter shows every sample


def _stamp(root: Path) -> tuple:
    """What changes when a folder's results do (a rescore, a resumed run): the sample folder and metrics."""
    out: list[tuple[int, int] | None] = []
    for p in (root / "samples", root / "metrics.json", root / "eval.json"):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class Comparisons:
    """compare documents of one served collection, cached per pair of folders while both are unchanged."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self._cache: dict[tuple[str, str], tuple[tuple, dict]] = {}
        self._lock = threading.Lock()

    def document(self, a: str, b: str) -> dict:
        """The comparison of evaluation B against A (refs relative to the root); ViewError when they differ
        in benchmark or GT, OutsideRoot (404) when a ref names no evaluation inside the root."""
        fa, fb = self.folder.evaluation_folder(a), self.folder.evaluation_folder(b)
        key = (_stamp(fa.root), _stamp(fb.root))
        with self._lock:
            hit = self._cache.get((a, b))
        if hit and hit[0] == key:
            return hit[1]
        try:
            report = compare_folders([fa.root, fb.root], resamples=RESAMPLES, points=True)
        except (CompareError, SettingsMismatch) as e:
            # the folders' absolute paths are the server's business: name them as the page does
            msg = str(e).replace(str(fa.root), a).replace(str(fb.root), b)
            raise ViewError(msg) from None
        c = report["comparisons"][0]
        traces_a, traces_b = fa.root / "traces", fb.root / "traces"
        changed = []
        for row in c["changed"][:CHANGED_SHOWN]:
            sid = row["id"]
            both = (traces_a / sid / "trace.json").is_file() and (traces_b / sid / "trace.json").is_file()
            changed.append({**row, "diff": [f"{a}/traces/{sid}", f"{b}/traces/{sid}"] if both else None})
        doc = {
            "a": a,
            "b": b,
            "dataset": report["dataset"],
            "resamples": report["resamples"],
            "values": report["values"],
            "n_paired": c["n_paired"],
            "metrics": c["metrics"],
            "mcnemar": c["mcnemar"],
            "summary": c["summary"],
            "by_gate": c["by_gate"],
            "by_class": c["by_class"][:50],
            "only_a": c["only_a"][:200],
            "only_b": c["only_b"][:200],
            "n_only_a": len(c["only_a"]),
            "n_only_b": len(c["only_b"]),
            "n_changed": len(c["changed"]),
            "changed": changed,
            "points": c["points"],
        }
        with self._lock:
            self._cache[(a, b)] = (key, doc)
        return doc


def render_compare_page() -> str:
    """The comparison page: its own script, the viewer's stylesheet."""
    return (
        _asset("compare.html")
        .replace("{{TITLE}}", html.escape("gar view · compare"))
        .replace("/*{{CSS}}*/", _asset("page.css") + _asset("compare.css"))
        .replace("/*{{JS}}*/", _script_safe(_asset("compare.js")))
    )


def compare_routes(folder: Folder, guard) -> list[Route]:
    """The page and its API; `guard` maps the viewer's errors to status codes as for every route."""
    comparisons = Comparisons(folder)

    def page(request: Request) -> Response:
        return HTMLResponse(render_compare_page(), headers={"Cache-Control": "no-store"})

    def api(request: Request) -> Response:
        a, b = request.query_params.get("a"), request.query_params.get("b")
        if not a or not b:
            return JSONResponse({"error": "give two evaluations: ?a=REF&b=REF"}, status_code=400)
        return Response(json.dumps(comparisons.document(a, b), allow_nan=False), media_type="application/json")

    return [Route("/compare", page), Route("/api/compare", guard(api))]
