"""A run spec on disk (OUT/spec.json of an eval folder, `gar eval replay`'s input): written like a trace
(long texts as attachments, atomically) and read as untrusted like one. The spec itself, and how a
run builds it, is gar_agent/spec.py; these were its storing half (gar_agent.spec.write_spec, ...)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from gar_agent.spec import SPEC_FILE, SPEC_VERSION, RunSpec, SpecError
from gar_agent.trace.schema import attachment_key, intern_strings, resolve_strings
from gar_agent.trace.store import TraceError, atomic_write, load_json


def spec_document(spec: RunSpec) -> dict:
    """A spec file's JSON: long texts (graph source, templates) as attachments, as a trace stores them."""
    attachments: dict[str, str] = {}
    body = intern_strings(spec.model_dump(mode="json"), attachments)
    return {"spec_version": SPEC_VERSION, "spec": body, "attachments": attachments}


def write_spec(path: str | Path, spec: RunSpec) -> Path:
    """Write a spec file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(spec_document(spec), ensure_ascii=False, separators=(",", ":")) + "\n")
    return path


def read_spec(path: str | Path) -> RunSpec:
    """A spec file, read as untrusted (as a trace is: bounded size, numbers and nesting, attachments
    checked against their hash); SpecError (one line) when it is missing, corrupt or of a newer version."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no run spec {path}")
    try:
        doc = load_json(path, "run spec")
    except TraceError as e:
        raise SpecError(str(e)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
        raise SpecError(f"{path} is not a run spec written by gar")
    if not isinstance(doc.get("spec_version"), int) or doc["spec_version"] > SPEC_VERSION:
        raise SpecError(f"run spec {path} has version {doc.get('spec_version')!r}, newer than this gar reads")
    attachments = doc.get("attachments") or {}
    if not isinstance(attachments, dict) or any(
        not isinstance(v, str) or attachment_key(v) != k for k, v in attachments.items()
    ):
        raise SpecError(f"run spec {path}: an attachment does not match its sha256 (edited or damaged)")
    try:
        return RunSpec.model_validate(resolve_strings(doc["spec"], attachments))
    except (ValidationError, ValueError, TypeError) as e:
        raise SpecError(f"run spec {path} is corrupt ({type(e).__name__}): it cannot be read") from None


def folder_spec(trace_path: str | Path, spec: RunSpec | None = None) -> RunSpec | None:
    """The full spec of an eval folder's trace (`OUT/traces/<id>/trace.json` -> `OUT/spec.json`).

    With `spec` (the trace's slim one), the folder's spec is returned only if it is the same graph
    and prompt set (their hashes agree); None when there is no such file.
    """
    candidate = Path(trace_path).resolve().parent.parent.parent / SPEC_FILE
    if not candidate.is_file():
        return None
    try:
        full = read_spec(candidate)
    except SpecError:
        return None
    if spec is not None and (full.graph.sha256 != spec.graph.sha256 or full.prompts.hashes != spec.prompts.hashes):
        return None
    return full
