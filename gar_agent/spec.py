"""The run spec: everything that decides a run, in one typed, serialisable record.

A trace used to name its model as a display string (`"openai --model X"`) and its graph file and
prompt templates by hash only, so a saved run could not rebuild the model that made it nor show
the graph it ran. A `RunSpec` holds:

- `backend`: the `--backend` name, `--model`, the factory options as given (base URLs, retries,
  timeouts, prefix cache, batch size...) and the built model's own configuration fields (dtype,
  device, attention, quantisation, sampling, max tokens...). Never a secret: an API key is recorded
  as the NAME of its environment variable (`api_key_env`); fields that look like credentials,
  `SecretStr` values and passwords inside URLs are left out;
- `graph`: name, sha256 and the source text of the graph file that ran;
- `prompts`: the prompt set's name and path, and each template's text and sha256;
- `protocol`, `settings` (K, N, votes per call, tau_av, tau_audio, decoding) and `options` (what the
  command decided besides: dataset, GT boxes, audio window, ...).

Public API (small on purpose):

- `RunSpec`, `BackendSpec`, `GraphSpec`, `PromptsSpec`: pydantic models;
  `spec.model_dump(mode="json")` and `RunSpec.model_validate(doc)` round-trip.
- `build_spec(...)`: what `gar run`, `gar eval run` and `gar track` call once per command.
- `PromptsSpec.prompt_set()`: the recorded templates as a PromptSet (what a replay asks with).
- `RunSpec.slim()`: the spec without the graph source and template texts (hashes kept): what each
  trace of an evaluation folder records; the folder's `spec.json` holds the texts once.
- `RunSpec.build_backend()` (= `BackendSpec.build()`): the recorded backend rebuilt (`gar replay
  --backend recorded`), the key re-read from the named environment variable. A `module:attr`
  backend is refused: rebuilding it would import code a recording names.
- gar_agent/trace/spec_file.py stores it: `write_spec(path, spec)` / `read_spec(path)`, a spec file
  (an eval folder's `spec.json`), long texts stored as attachments as in a trace;
  `folder_spec(trace_path)`: the spec.json of the eval folder a trace lies in, if any.

The graph source is recorded to be SHOWN and diffed (`gar trace show RUN --graph-source`), never to
be run: re-running a recording uses the shipped graph with the recorded sha256 or the user's
`--graph` (gar_agent.topology.recorded_topology).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretBytes, SecretStr

from gar_agent.errors import BackendError, UserError
from gar_agent.state import Settings

if TYPE_CHECKING:  # heavy or cyclic at import time: only for annotations
    from langchain_core.language_models import BaseChatModel

    from gar_agent.prompts import PromptSet
    from gar_agent.topology import Topology

SPEC_VERSION = 1
SPEC_FILE = "spec.json"
# field names that may hold a credential: never recorded (api_key_env, the variable's NAME, is kept)
_SECRET = re.compile(r"(api_?key|secret|password|passwd|credential|auth|bearer|cookie|^token$|_token$)", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*):[^/@\s]*@", re.I)
_MAX_FIELD_JSON = 4000  # a model field bigger than this (a scripted model's whole script) is not a setting


class SpecError(UserError):
    """A spec file that cannot be read, or a recorded backend that cannot be rebuilt."""


class BackendSpec(BaseModel):
    """The model that answered: how to build it again, and how it was configured."""

    name: str = Field(description="As given to --backend: qwen-omni, openai, scripted:FILE, module:attr.")
    model: str | None = Field(None, description="--model: checkpoint or served model name.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword options the backend factory was called with (base_urls, api_key_env, max_retries, "
        "request_timeout, backoff_base, prefix_cache, batch_size...): what `build_backend` passes again.",
    )
    resolved: dict[str, Any] = Field(
        default_factory=dict,
        description="The built model's configuration fields (dtype, device, attn_implementation, quantization, "
        "temperature, max tokens, timeouts...), credentials left out. Informative: shown and diffed.",
    )

    def display(self) -> str:
        """The backend as a CLI would name it."""
        return self.name if not self.model else f"{self.name} --model {self.model}"

    def build(self) -> BaseChatModel:
        """The backend built again from its name, model and options (BackendError if it cannot be).

        An API key is read again from the environment variable the options name. A `module:attr`
        backend is refused: importing a module a recording names would run its code.
        """
        from gar_agent.models.backends import resolve_backend

        if self.name == "recording":
            raise BackendError(
                f"the run was answered from the recording of run {self.options.get('parent')!r}, which names no "
                "backend (it predates run specs): give --backend NAME"
            )
        if self.name.startswith("scripted:"):
            return resolve_backend(self.name)
        if ":" in self.name:
            raise BackendError(
                f"the recorded backend is {self.name!r}, a module a recording may not import (it would run its "
                f"code): pass --backend {self.name} yourself if you trust it"
            )
        return resolve_backend(self.name, self.model, **self.options)


class GraphSpec(BaseModel):
    """The graph file that ran."""

    name: str
    sha256: str
    path: str = Field("", description="Where the file was (informative: never loaded from a recording).")
    source: str | None = Field(None, description="The file's text; None in a slim spec (eval folder traces).")


class PromptsSpec(BaseModel):
    """The prompt set that ran."""

    name: str = Field(description="The set's folder name (prompts, vggss-single, ...).")
    path: str = ""
    protocol: str = "gar"
    hashes: dict[str, str] = Field(default_factory=dict, description="file -> sha256 (templates and manifest).")
    templates: dict[str, str] = Field(default_factory=dict, description="file -> text; empty in a slim spec.")

    def prompt_set(self) -> PromptSet | None:
        """The recorded templates as a PromptSet (no folder read), or None when the texts are not here (slim)."""
        if not self.templates:
            return None
        from gar_agent.prompts import PromptSet

        return PromptSet.from_texts(self.templates, self.path or self.name)


class RunSpec(BaseModel):
    """Everything that decides a run (see the module docstring)."""

    spec_version: int = SPEC_VERSION
    command: str = Field("run", description="The command that built it: run, eval, track, replay, fork.")
    backend: BackendSpec
    graph: GraphSpec
    prompts: PromptsSpec
    protocol: str = "gar"
    settings: Settings
    options: dict[str, Any] = Field(
        default_factory=dict, description="What the command decided besides the settings (dataset, gt_boxes, ...)."
    )

    def slim(self) -> RunSpec:
        """This spec without the graph source and the template texts (their hashes stay)."""
        return self.model_copy(
            update={
                "graph": self.graph.model_copy(update={"source": None}),
                "prompts": self.prompts.model_copy(update={"templates": {}}),
            }
        )

    @property
    def is_slim(self) -> bool:
        """Whether the texts are elsewhere (the eval folder's spec.json)."""
        return self.graph.source is None

    def build_backend(self) -> BaseChatModel:
        """The recorded backend built again (`BackendSpec.build`)."""
        return self.backend.build()


# --- building ------------------------------------------------------------------------------------


def _redact(value: Any) -> Any:
    """The value with passwords inside URLs (scheme://user:PASSWORD@host) removed."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<head>@", value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items() if not _secret_name(k)}
    return value


def _secret_name(name: str) -> bool:
    return bool(_SECRET.search(str(name))) and not str(name).endswith("_env")


def _jsonable(value: Any) -> Any:
    """A JSON value, or a ValueError for what a spec cannot hold."""
    if isinstance(value, (SecretStr, SecretBytes)):
        raise ValueError("a secret")
    if isinstance(value, tuple):
        value = list(value)
    text = json.dumps(value, allow_nan=False)
    if len(text) > _MAX_FIELD_JSON:
        raise ValueError("too large to be a setting")
    return json.loads(text)


def model_config_fields(chat: Any) -> dict[str, Any]:
    """The configuration fields of a built chat model: its own pydantic fields (not BaseChatModel's),
    JSON values only, credentials left out."""
    from langchain_core.language_models import BaseChatModel

    fields = getattr(type(chat), "model_fields", None) or {}
    base = set(BaseChatModel.model_fields)
    out: dict[str, Any] = {}
    for name in fields:
        if name in base or _secret_name(name):
            continue
        try:
            out[name] = _redact(_jsonable(getattr(chat, name, None)))
        except (TypeError, ValueError):
            continue  # an object (a client, a tokenizer) or a secret: not a setting to record
    return out


def backend_spec(name: str, model: str | None, options: dict | None = None, chat: Any = None) -> BackendSpec:
    """The BackendSpec of a `--backend` value, the factory options it was built with, and the built model."""
    kept = {}
    for key, value in (options or {}).items():
        if value is None or _secret_name(key):
            continue
        try:
            kept[key] = _redact(_jsonable(value))
        except (TypeError, ValueError):
            continue
    resolved = model_config_fields(chat) if chat is not None else {}
    if name == "openai":
        kept.setdefault("api_key_env", "OPENAI_API_KEY")  # the variable read, so a rebuild reads it too
        if "base_urls" not in kept and resolved.get("base_urls"):  # taken from OPENAI_BASE_URL
            kept["base_urls"] = resolved["base_urls"]
    return BackendSpec(name=name, model=model, options=kept, resolved=resolved)


def graph_spec(topology: Topology) -> GraphSpec:
    """The graph file's name, hash and text (read from the file that was loaded)."""
    try:
        data = Path(topology.path).read_bytes()
        # edited since it was loaded: the text would not be what ran
        source = data.decode("utf-8") if hashlib.sha256(data).hexdigest() == topology.sha256 else None
    except (OSError, UnicodeDecodeError):
        source = None
    return GraphSpec(name=topology.name, sha256=topology.sha256, path=str(topology.path), source=source)


def prompts_spec(prompts: PromptSet) -> PromptsSpec:
    """The prompt set's name, path, protocol, and every template's text and hash."""
    hashes = prompts.hashes()
    templates = {}
    for name in hashes:
        try:
            templates[name] = (Path(prompts.directory) / name).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return PromptsSpec(
        name=Path(prompts.directory).name,
        path=str(prompts.directory),
        protocol=prompts.protocol,
        hashes=hashes,
        templates=templates,
    )


def build_spec(
    *,
    command: str,
    backend: str | BackendSpec,
    model: str | None = None,
    options: dict | None = None,
    chat: Any = None,
    topology: Topology,
    prompts: PromptSet,
    settings: Settings,
    **extra: Any,
) -> RunSpec:
    """The RunSpec of a command: built once (not per clip), recorded by every trace it writes.

    `backend` is the `--backend` value (or an already built BackendSpec, e.g. the one a replay
    inherits); `options` the keyword options it was resolved with; `chat` the built model (its
    configuration fields are recorded); `extra` the command's other deciding options (JSON values).
    """
    spec_backend = backend if isinstance(backend, BackendSpec) else backend_spec(backend, model, options, chat)
    return RunSpec(
        command=command,
        backend=spec_backend,
        graph=graph_spec(topology),
        prompts=prompts_spec(prompts),
        protocol=settings.protocol,
        settings=settings,
        options={k: _redact(_jsonable(v)) for k, v in extra.items() if v is not None},
    )
