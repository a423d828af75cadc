"""`gar view [PATH] [--port P] [--host H] [--export FILE.html]`: the command; the viewer is gar_agent/view."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gar_agent.cli.common import USER_ERRORS, console, fail
from gar_agent.extras import install_command
from gar_agent.paths import TRACES_DIR
from gar_agent.view.hosts import allowed_hosts, is_loopback


def missing_extra() -> str:
    """What to run when the viewer's dependencies are missing (for a wheel install or a checkout)."""
    return f"the viewer needs its extra: {install_command('view')} (starlette, uvicorn)"


def view(
    path: Annotated[
        Path, typer.Argument(help="A traces folder, one run (folder or trace.json), or a `gar eval` output folder.")
    ] = TRACES_DIR,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind; the default serves this machine only.")] = "127.0.0.1",
    export: Annotated[
        Optional[Path], typer.Option(help="Write PATH (one run) as one self-contained HTML file instead of serving.")
    ] = None,
    allow_host: Annotated[
        Optional[list[str]],
        typer.Option(help="Also answer requests naming this host (repeatable; e.g. a name colleagues use)."),
    ] = None,
) -> None:
    """Serve a read-only web viewer of runs, diffs and evaluations (or export one run as HTML)."""
    try:
        from gar_agent.view.index import Folder, ViewError
    except ImportError:  # pragma: no cover - the view extra is not installed
        raise fail(missing_extra()) from None
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
        raise fail(missing_extra()) from None
    try:
        folder = Folder.open(path)
    except ViewError as e:
        raise fail(str(e)) from None
    try:  # bind first, so the printed URL has the real port (also with --port 0)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # connections made as soon as the URL is printed wait for the server
    except (OSError, OverflowError) as e:  # an OverflowError (a port out of range) has no strerror
        reason = (e.strerror if isinstance(e, OSError) else None) or e
        raise fail(f"cannot listen on {host}:{port} ({reason}): give another --port or --host") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(f"gar view: {folder.mode} {folder.root}", markup=False)
    console.print(f"serving at http://{shown}:{bound}/  (read-only; Ctrl-C stops)", markup=False)
    hosts = allowed_hosts(host, allow_host)
    if not is_loopback(host):
        sys.stderr.write(
            f"gar view: warning: --host {host} serves the runs (prompts, answers, media) to anyone who can reach "
            f"this machine on port {bound}; answered host names: {', '.join(hosts)} (add more with --allow-host)\n"
        )
    server = uvicorn.Server(uvicorn.Config(create_app(folder, hosts=hosts), log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
