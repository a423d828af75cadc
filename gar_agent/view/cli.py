"""`gar view [PATH] [--port P] [--host H] [--export FILE.html]`."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Optional

import typer

from gar_agent.cli.common import USER_ERRORS, console, fail
from gar_agent.paths import TRACES_DIR

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MISSING_EXTRA = "the viewer needs its extra: pip install -e '.[view]' (starlette, uvicorn)"


def view(
    path: Annotated[
        Path, typer.Argument(help="A traces folder, one run (folder or trace.json), or a `gar eval` output folder.")
    ] = TRACES_DIR,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind; the default serves this machine only.")] = "127.0.0.1",
    export: Annotated[
        Optional[Path], typer.Option(help="Write PATH (one run) as one self-contained HTML file instead of serving.")
    ] = None,
) -> None:
    """Serve a read-only web viewer of runs, diffs and evaluations (or export one run as HTML)."""
    try:
        from gar_agent.view.source import Folder, ViewError
    except ImportError:  # pragma: no cover - the view extra is not installed
        raise fail(MISSING_EXTRA) from None
    if export is not None:
        from gar_agent.view.export import export_run

        try:
            written = export_run(path, export)
        except (ViewError, *USER_ERRORS) as e:
            raise fail(str(e)) from None
        console.print(f"wrote {written}")
        return
    try:
        import uvicorn

        from gar_agent.view.server import create_app
    except ImportError:
        raise fail(MISSING_EXTRA) from None
    try:
        folder = Folder.open(path)
    except ViewError as e:
        raise fail(str(e)) from None
    try:  # bind first, so the printed URL has the real port (also with --port 0)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # connections made as soon as the URL is printed wait for the server
    except (OSError, OverflowError) as e:
        raise fail(f"cannot listen on {host}:{port} ({e.strerror or e}): give another --port or --host") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(f"gar view: {folder.mode} {folder.root}", markup=False)
    console.print(f"serving at http://{shown}:{bound}/  (read-only; Ctrl-C stops)", markup=False)
    # on a loopback address only loopback names are answered (no DNS rebinding); a chosen interface answers any
    hosts = list(LOOPBACK) if host in LOOPBACK else None
    server = uvicorn.Server(uvicorn.Config(create_app(folder, hosts=hosts), log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
