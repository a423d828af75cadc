"""Read, write and list traces; one folder per run: `<dir>/<run_id>/trace.json` (+ media/)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jsonpatch
from jsonpointer import JsonPointerException
from pydantic import ValidationError

from gar_agent.errors import UserError
from gar_agent.paths import TRACES_DIR
from gar_agent.trace.schema import SCHEMA_VERSION, Trace, from_document, to_document

TRACE_FILE = "trace.json"


class TraceError(UserError):
    """A trace that is missing, corrupt, or of a schema this version cannot read."""


def write_trace(trace: Trace, directory: str | Path | None = None, embed_media: bool = False) -> Path:
    """Write a trace atomically (a half-written file never replaces a good one); return its path."""
    folder = Path(directory or TRACES_DIR) / trace.run_id
    folder.mkdir(parents=True, exist_ok=True)
    if embed_media:
        media_dir = folder / "media"
        media_dir.mkdir(exist_ok=True)
        for kind, info in trace.inputs.items():
            if kind == "video":  # can be large; what the model saw of it is the embedded image and audio
                continue
            target = media_dir / f"{info.sha256}{Path(info.path).suffix.lower()}"
            if not target.exists():
                shutil.copyfile(info.path, target)
            trace.embedded_media[kind] = str(target.relative_to(folder))
    path = folder / TRACE_FILE
    # compact: json's C encoder (indent= falls back to the pure-Python one, ~10x slower per trace);
    # `gar trace show`, `gar view` or `jq .` read it
    atomic_write(path, json.dumps(to_document(trace), ensure_ascii=False, separators=(",", ":")))
    return path


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a trace is as readable as result.json
    os.replace(tmp, path)


def resolve_trace(run_or_file: str | Path, directory: str | Path | None = None) -> Path:
    """The trace file for a path (file or run folder) or a run id (or unique prefix) under `directory`."""
    p = Path(run_or_file)
    if p.is_file():
        return p
    if p.is_dir() and (p / TRACE_FILE).is_file():
        return p / TRACE_FILE
    root = Path(directory or TRACES_DIR)
    is_id = p.name == str(run_or_file) and "*" not in p.name
    matches = sorted(root.glob(f"{p.name}*/{TRACE_FILE}")) if is_id and root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise TraceError(f"run id {run_or_file!r} matches {len(matches)} runs in {root}: give more characters")
    raise TraceError(f"no trace {run_or_file!r}: not a file, nor a run id under {root} (see `gar trace list`)")


def read_trace(run_or_file: str | Path, directory: str | Path | None = None) -> Trace:
    """Load and validate a trace, with one-line errors for corrupt or newer files."""
    path = resolve_trace(run_or_file, directory)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TraceError(f"trace {path} is corrupt (not JSON: {e}): it cannot be read") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise TraceError(f"trace {path} has no schema_version: it is not a gar trace")
    if version > SCHEMA_VERSION:
        raise TraceError(
            f"trace {path} has schema version {version}, newer than this gar-agent reads ({SCHEMA_VERSION}): upgrade gar-agent"
        )
    if version < 1:
        raise TraceError(f"trace {path} has unknown schema version {version}")
    try:
        return from_document(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise TraceError(f"trace {path} is corrupt at {where}: {first['msg']}") from None
    except (ValueError, TypeError, KeyError, IndexError, jsonpatch.JsonPatchException, JsonPointerException) as e:
        raise TraceError(f"trace {path} is corrupt ({type(e).__name__}: {e}): it cannot be read") from None


def list_traces(directory: str | Path | None = None) -> list[tuple[Path, Trace | TraceError]]:
    """Every trace under a directory, newest first; unreadable ones come back as their error."""
    root = Path(directory or TRACES_DIR)
    out: list[tuple[Path, Trace | TraceError]] = []
    for path in sorted(root.glob(f"*/{TRACE_FILE}")) if root.is_dir() else []:
        try:
            out.append((path, read_trace(path)))
        except TraceError as e:
            out.append((path, e))
    out.sort(key=lambda item: item[1].created if isinstance(item[1], Trace) else "", reverse=True)
    return out
