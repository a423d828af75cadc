"""The viewer's HTTP app (Starlette): one page and a read-only JSON API over the served folder.

Every route is a GET; nothing is written. A run is named by its folder relative to the root
(`?ref=`); a ref that leaves the root (`..`, a symlink, an absolute path) or names nothing is 404.
A trace that cannot be read answers 422 with its one-line error, which the page shows as a card.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.responses import JSONResponse as StarletteJSON
from starlette.routing import Route

from gar_agent.view import media
from gar_agent.view.compare import compare_routes
from gar_agent.view.documents import diff_document, run_document
from gar_agent.view.graph_source import graph_source_document
from gar_agent.view.index import Folder, ViewError
from gar_agent.view.page import render_page
from gar_agent.view.safety import OutsideRoot

MAX_PAGE = 500


def _finite(value):
    """The value with every NaN/Infinity float made None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class JSONResponse(StarletteJSON):
    """Starlette's JSON answer, but a NaN anywhere (a sample or metrics file may hold one) is null, not a 500."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # allow_nan=False refused a NaN/Infinity: only then pay for the walk
            return super().render(_finite(content))


class BadRequest(ValueError):
    """A malformed query parameter."""


def _int(request: Request, name: str, default: int, low: int = 0, high: int = 10**9) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None


def _ref(request: Request, name: str = "ref") -> str:
    ref = request.query_params.get(name)
    if ref is None:
        raise BadRequest(f"missing query parameter {name}")
    return ref


def _guard(handler: Callable) -> Callable:
    """Map the viewer's errors to status codes: 404 outside/missing, 422 unreadable run, 400 bad query."""

    def wrapped(request: Request) -> Response:  # sync: Starlette runs it in its thread pool (file reads block)
        try:
            return handler(request)
        except OutsideRoot:
            return JSONResponse({"error": "not found"}, status_code=404)
        except ViewError as e:
            return JSONResponse({"error": str(e)}, status_code=422)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    return wrapped


def create_app(folder: Folder, warm: bool = True, hosts: list[str] | None = None) -> Starlette:
    """The app over one served folder; `warm` indexes every run in the background at start.

    `hosts`: the Host headers answered (others get 400), so a web page that rebinds its own domain
    name to 127.0.0.1 cannot read the runs through the visitor's browser; None answers any (tests and
    scripts: `gar view` always gives its list, see `gar_agent.view.hosts.allowed_hosts`).
    """

    def index(request: Request) -> Response:
        return HTMLResponse(render_page(), headers={"Cache-Control": "no-store"})

    def info(request: Request) -> Response:
        # the folder's name only: its absolute path tells a visitor the user name and disk layout
        return JSONResponse({"mode": folder.mode, "root": folder.root.name, "path": folder.root.name})

    def runs(request: Request) -> Response:
        page = folder.runs(
            _int(request, "offset", 0), _int(request, "limit", 100, 1, MAX_PAGE), request.query_params.get("q", "")
        )
        return JSONResponse(page)

    def run(request: Request) -> Response:
        ref = _ref(request)
        trace = folder.read(ref)
        doc = run_document(trace, ref, folder.sample_gt(ref, trace))
        doc["sample"] = folder.sample_facts(ref)  # a run of an evaluation: its sample's cIoU and AP
        doc["graph_source"] = graph_source_document(trace, folder.trace_path(ref))  # shown as text, never run
        return JSONResponse(doc)

    def diff(request: Request) -> Response:
        a, b = _ref(request, "a"), _ref(request, "b")
        return JSONResponse(diff_document(folder.read(a), folder.read(b), a, b))

    def evaluations(request: Request) -> Response:
        return JSONResponse({"rows": folder.evaluations()})

    def evaluation(request: Request) -> Response:
        ref = request.query_params.get("ref", ".")
        return JSONResponse({**folder.evaluation_folder(ref).evaluation(), "ref": ref})

    def samples(request: Request) -> Response:
        ref = request.query_params.get("ref", ".")
        evaluation = folder.evaluation_folder(ref)
        status = request.query_params.get("status", "")
        if status not in ("", "failed", "refined", "skipped", "ok"):
            raise BadRequest(f"status must be failed, refined, skipped or ok, got {status!r}")
        page = evaluation.samples(
            offset=_int(request, "offset", 0),
            limit=_int(request, "limit", 100, 1, MAX_PAGE),
            sort=request.query_params.get("sort", "id"),
            descending=request.query_params.get("desc", "") in ("1", "true"),
            status=status,
            iou_min=_float(request, "iou_min"),
            iou_max=_float(request, "iou_max"),
            cls=request.query_params.get("cls", ""),
        )
        if ref not in ("", "."):  # a sample's run, named from the served folder
            prefix = ref.rstrip("/") + "/"
            page["rows"] = [{**r, "trace": prefix + r["trace"] if r["trace"] else None} for r in page["rows"]]
        return JSONResponse(page)

    def _media(ref: str, kind: str) -> tuple[Path, str]:
        if kind not in media.KINDS:
            raise OutsideRoot(kind)
        trace = folder.read(ref)
        found = media.locate(trace, folder.trace_path(ref), folder.root, kind)
        if found is None:
            raise OutsideRoot(ref)
        return found

    def media_file(request: Request) -> Response:
        path, mime = _media(_ref(request), request.query_params.get("kind", ""))
        return FileResponse(path, media_type=mime)

    def thumb(request: Request) -> Response:
        ref = _ref(request)
        path = folder.vis_path(ref) or _media(ref, "image")[0]
        data = media.thumbnail(path)
        if data is None:
            raise OutsideRoot(ref)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def wave(request: Request) -> Response:
        path, _ = _media(_ref(request), "audio")
        peaks = media.waveform(path)
        if peaks is None:
            raise ViewError("the audio could not be decoded")
        return JSONResponse(peaks)

    routes = [
        Route("/", index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/info", _guard(info)),
        Route("/api/runs", _guard(runs)),
        Route("/api/run", _guard(run)),
        Route("/api/diff", _guard(diff)),
        Route("/api/evals", _guard(evaluations)),
        Route("/api/eval", _guard(evaluation)),
        Route("/api/samples", _guard(samples)),
        Route("/api/media", _guard(media_file)),
        Route("/api/thumb", _guard(thumb)),
        Route("/api/waveform", _guard(wave)),
        *compare_routes(folder, _guard),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if warm:  # index every run in the background so filters answer at once
            threading.Thread(target=folder.warm, name="gar-view-index", daemon=True).start()
        yield

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts)] if hosts else []
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
