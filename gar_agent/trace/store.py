"""Read, write and list traces; one folder per run: `<dir>/<run_id>/trace.json` (+ media/)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jsonpatch
from jsonpointer import JsonPointerException
from pydantic import ValidationError

from gar_agent.errors import UserError
from gar_agent.paths import TRACES_DIR
from gar_agent.trace.schema import SCHEMA_VERSION, Trace, attachment_key, from_document, to_document

TRACE_FILE = "trace.json"


class TraceError(UserError):
    """A trace that is missing, corrupt, or of a schema this version cannot read."""


def write_trace(trace: Trace, directory: str | Path | None = None, embed_media: bool = False) -> Path:
    """Write a trace atomically (a half-written file never replaces a good one); return its path.

    A NaN or an infinity anywhere in the trace (a node that computed 0/0 into the state, say) is
    written as null: JSON has no such numbers and `read_trace` refuses a file holding them, so
    every trace written here can be read back.
    """
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
    atomic_write(path, finite_json(to_document(trace)))
    return path


def finite_json(doc: Any) -> str:
    """Compact JSON text of `doc` with every NaN and infinity written as null (strict JSON)."""
    try:  # the usual case: nothing to replace, one pass of the C encoder
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_nulls_for_nonfinite(doc), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _nulls_for_nonfinite(value: Any) -> Any:
    """A copy of a JSON-able value with non-finite floats as None (iterative: a deep state needs no recursion)."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, key, item = stack.pop()
        if isinstance(item, float):
            parent[key] = item if math.isfinite(item) else None
        elif isinstance(item, dict):
            copy = dict(item)
            parent[key] = copy
            stack.extend((copy, k, v) for k, v in copy.items())
        elif isinstance(item, (list, tuple)):
            items = list(item)
            parent[key] = items
            stack.extend((items, i, v) for i, v in enumerate(items))
    return root[0]


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


MAX_TRACE_MB = 1024  # a real trace is a few MB; a 200 MB one (thousands of steps) still reads
MAX_DEPTH = 100  # a trace nests ~20 levels; deeper is a crafted file (and would exhaust recursion)
MAX_INT_DIGITS = 100  # ids, sizes and seeds are at most 20 digits; Python refuses past 4300 with a ValueError


class _BadValue(ValueError):
    """A JSON value a trace never holds (NaN, Infinity, a number too large)."""


def _no_constant(name: str):
    raise _BadValue(f"{name}, which JSON does not allow")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadValue(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadValue(f"the number {text[:40]}, which overflows a float")
    return value


def _float_or_none(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def json_depth(value: Any, limit: int) -> int:
    """How deep a parsed JSON value nests (iteratively; stops once past `limit`)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if depth > limit:
                return depth
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return deepest


def _max_bytes() -> int:
    raw = os.environ.get("GAR_MAX_TRACE_MB", "")
    try:
        return int(float(raw) * 1e6) if raw else MAX_TRACE_MB * 1_000_000
    except ValueError:
        return MAX_TRACE_MB * 1_000_000


def load_json(path: Path, what: str = "trace", nan_as_null: bool = False) -> Any:
    """A JSON file read as untrusted: bounded size, no NaN/Infinity, no huge numbers, bounded nesting.

    Every reader of a trace goes through here (via `read_trace`), so a crafted or damaged file is
    one `TraceError` line naming the file and what is wrong, never a ValueError or RecursionError.
    `nan_as_null`: NaN, Infinity and overflowing floats read as None instead (a metrics file, where
    "no value" was once written as NaN).
    """
    limit = _max_bytes()
    try:
        size = path.stat().st_size
    except OSError as e:
        raise TraceError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    if size > limit:
        raise TraceError(
            f"{what} {path} is {size / 1e6:.0f} MB, over the {limit / 1e6:.0f} MB limit: "
            "set GAR_MAX_TRACE_MB to read it anyway"
        )
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(
            text,
            parse_constant=(lambda _: None) if nan_as_null else _no_constant,
            parse_int=_bounded_int,
            parse_float=_float_or_none if nan_as_null else _finite_float,
        )
    except _BadValue as e:
        raise TraceError(f"{what} {path} holds {e}: it cannot be read") from None
    except RecursionError:
        raise TraceError(f"{what} {path} nests deeper than {MAX_DEPTH} levels: it is not a gar {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TraceError(f"{what} {path} is corrupt (not JSON: {e}): it cannot be read") from None
    except OSError as e:
        raise TraceError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    if isinstance(data, (dict, list)) and json_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise TraceError(f"{what} {path} nests deeper than {MAX_DEPTH} levels: it is not a gar {what}")
    return data


def _check_attachments(path: Path, data: dict) -> None:
    """Each attachment is stored under its hash: one that no longer matches was edited or damaged."""
    attachments = data.get("attachments")
    if attachments is None:
        return
    if not isinstance(attachments, dict):
        raise TraceError(f"trace {path} is corrupt at attachments: not an object")
    for key, value in attachments.items():
        if not isinstance(value, str) or attachment_key(value) != key:
            raise TraceError(
                f"trace {path}: attachment {key[:12]} does not match its sha256 (edited or damaged): "
                "it cannot be trusted"
            )


def read_trace(run_or_file: str | Path, directory: str | Path | None = None) -> Trace:
    """Load and validate a trace, with one-line errors for corrupt, crafted or newer files."""
    path = resolve_trace(run_or_file, directory)
    data = load_json(path)
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise TraceError(f"trace {path} has no schema_version: it is not a gar trace")
    if version > SCHEMA_VERSION:
        raise TraceError(
            f"trace {path} has schema version {version}, newer than this gar-agent reads ({SCHEMA_VERSION}): upgrade gar-agent"
        )
    if version < 1:
        raise TraceError(f"trace {path} has unknown schema version {version}")
    _check_attachments(path, data)
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
