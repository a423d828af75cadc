"""Replay a recorded run (answers served from the recording) and fork it from a step.

A model call is matched by stage, source and request (template, rendered prompt, sampling). With
nothing changed a replay reproduces the recorded result exactly. Calls the recording lacks (a
stricter tau_av sends a source to Refine, an edited prompt) go to a fallback backend if one is
given; otherwise the replay stops and names the missing call.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from gar_agent.calls import answer_text
from gar_agent.hashing import file_sha256
from gar_agent.media import Media, MediaError, load_media
from gar_agent.prompts import PromptSet
from gar_agent.result import RunOutcome
from gar_agent.run import Lineage, run_and_record
from gar_agent.spec import BackendSpec, build_spec
from gar_agent.state import RunState
from gar_agent.topology import Topology
from gar_agent.trace.schema import Fork, Trace, TraceCall


class MissingRecording(LookupError):
    """The graph asked for a model call the recording does not have."""


def call_key(stage, source, template, prompt, temperature, top_p) -> tuple:
    """How a request is matched against the recording."""
    return (stage, source, template, prompt, round(float(temperature), 6), round(float(top_p), 6))


@dataclass
class _Recorded:
    """One recorded call: its answers, and its usage to report again."""

    answers: list[str]
    input_tokens: int
    output_tokens: int
    wall_s: float
    cached_input_tokens: int = 0


@dataclass
class _Pool:
    calls: list[_Recorded] = field(default_factory=list)
    call: int = 0  # next recorded call
    offset: int = 0  # answers already served from it

    def take(self, n: int) -> tuple[list[str], int, int, float, int] | None:
        """n answers in recorded order with their usage (prorated when calls are split)."""
        left = sum(len(c.answers) for c in self.calls[self.call :]) - self.offset
        if left < n:
            return None
        answers: list[str] = []
        tin, tout, wall, cached = 0, 0, 0.0, 0
        while len(answers) < n:
            c = self.calls[self.call]
            k = min(n - len(answers), len(c.answers) - self.offset)
            share = k / len(c.answers)
            answers += c.answers[self.offset : self.offset + k]
            tin += c.input_tokens if self.offset == 0 else 0
            cached += c.cached_input_tokens if self.offset == 0 else 0
            tout += round(c.output_tokens * share)
            wall += c.wall_s * share
            self.offset += k
            if self.offset == len(c.answers):
                self.call, self.offset = self.call + 1, 0
        return answers, tin, tout, wall, cached


class ReplayChatModel(BaseChatModel):
    """Serves recorded answers; forwards unrecorded calls to `fallback`, or raises MissingRecording."""

    trace_calls: list[TraceCall]
    frame: tuple[int, int] | None = None
    fallback: BaseChatModel | None = None
    _pools: dict = PrivateAttr(default_factory=lambda: defaultdict(_Pool))
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    missing: list[str] = []
    served: int = 0
    forwarded: int = 0
    served_tokens: int = 0  # input + output tokens the recording reports for the calls it served
    forwarded_tokens: int = 0  # and the backend for the calls sent to it (what a replay saved vs paid)

    def model_post_init(self, __context) -> None:
        for c in self.trace_calls:
            if c.error:
                continue
            key = call_key(c.stage, c.source, c.template, c.prompt, c.temperature, c.top_p)
            self._pools[key].calls.append(
                _Recorded(
                    list(c.answers),
                    c.usage.input_tokens,
                    c.usage.output_tokens,
                    c.usage.wall_s,
                    c.usage.cached_input_tokens,
                )
            )

    @property
    def supports_multiple_samples(self) -> bool:
        return True

    @property
    def _llm_type(self) -> str:
        return "replay"

    def model_frame(self, width: int, height: int) -> tuple[int, int]:
        """The coordinate frame of the recorded model."""
        return self.frame or (width, height)

    def edit_answer(self, stage: str, source: int, index: int, text: str) -> None:
        """Replace the index-th recorded answer of a stage/source (forking with an edited vote)."""
        pools = [(k, p) for k, p in self._pools.items() if k[0] == stage and k[1] == source]
        flat = [(c, i) for _, p in pools for c in p.calls for i in range(len(c.answers))]
        if not 0 <= index < len(flat):
            raise MissingRecording(f"source {source} has {len(flat)} recorded {stage} answers; no answer #{index}")
        c, i = flat[index]
        c.answers[i] = text

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        meta = (run_manager.metadata if run_manager else None) or {}
        prompt = answer_text(messages[-1]) if messages else ""
        n = int(kwargs.get("n") or 1)
        key = call_key(
            meta.get("gar_stage"),
            meta.get("gar_source"),
            meta.get("gar_template"),
            prompt,
            kwargs.get("temperature", 0.0),
            kwargs.get("top_p", 1.0) if kwargs.get("temperature") else 1.0,
        )
        with self._lock:
            got = self._pools[key].take(n) if key in self._pools else None
        if got is None:
            what = (
                f"{key[0]} call for source {key[1]} ({key[2]}, n={n})"
                if key[1] is not None
                else f"{key[0]} call ({key[2]})"
            )
            if self.fallback is None:
                self.missing.append(what)
                raise MissingRecording(f"the recording has no answer for the {what}: give --backend to run it")
            self.forwarded += 1
            result = self.fallback.generate([messages], metadata=meta, **kwargs)
            self.forwarded_tokens += sum(_tokens(g) for g in result.generations[0])
            return ChatResult(generations=result.generations[0])
        answers, tin, tout, wall, cached = got
        self.served += 1
        self.served_tokens += tin + tout
        gens = [
            ChatGeneration(
                message=AIMessage(
                    content=a,
                    # the whole call's usage on the first sample, as our adapters report it
                    usage_metadata={
                        "input_tokens": tin if i == 0 else 0,
                        "output_tokens": tout if i == 0 else 0,
                        "total_tokens": tin + tout if i == 0 else 0,
                        "input_token_details": {"cache_read": cached if i == 0 else 0},
                    },
                    response_metadata={"model_name": "replay", "wall_s": wall},
                )
            )
            for i, a in enumerate(answers)
        ]
        return ChatResult(generations=gens)


def _tokens(generation) -> int:
    usage = getattr(getattr(generation, "message", None), "usage_metadata", None) or {}
    return int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)


def trace_media(trace: Trace, trace_path: str | Path | None = None) -> Media:
    """The run's inputs: the recorded files if unchanged, else the copies embedded beside the trace."""
    files = {}
    for kind in ("image", "audio"):  # a video's frame and window are these two; the video itself is not needed
        info = trace.inputs[kind]
        candidates = [Path(info.path)]
        if trace_path and kind in trace.embedded_media:
            candidates.insert(0, Path(trace_path).parent / trace.embedded_media[kind])
        found = next((p for p in candidates if p.is_file() and file_sha256(p) == info.sha256), None)
        if found is None:
            raise MediaError(_media_gone(kind, info.path, trace.run_id, any(p.is_file() for p in candidates)))
        files[kind] = found
    audio = trace.final_state.audio
    assert audio is not None  # Trace refuses a final state without it
    max_s = audio.duration_s if audio.window_s else 0
    return load_media(files["image"], files["audio"], max_audio_s=max_s)


def _media_gone(kind: str, path: str, run_id: str, exists: bool) -> str:
    """Why an input cannot be used. A relative path is read from the current folder, so a run replayed
    from another folder finds no file although nothing was lost: say that rather than "missing"."""
    if exists:
        return f"{kind} {path} of run {run_id} changed since it was recorded: restore it, or record with --embed-media"
    where = (
        " (a relative path, read from the current folder: run from the folder the run was made in)"
        if not Path(path).is_absolute()
        else ""
    )
    return f"{kind} {path} of run {run_id} is not found{where}: restore it, or record with --embed-media"


def start_state(trace: Trace, **overrides) -> RunState:
    """The recorded initial state (inputs, frame), with settings overridden."""
    final = trace.final_state
    settings = trace.settings.with_overrides(**overrides)
    return RunState(settings=settings, image=final.image, audio=final.audio)


def replay_model(trace: Trace, fallback: BaseChatModel | None = None) -> ReplayChatModel:
    """A chat model that answers from this trace."""
    img = trace.final_state.image
    assert img is not None  # Trace refuses a final state without it
    frame = (img.model_width, img.model_height) if img.model_width else None
    return ReplayChatModel(trace_calls=trace.calls(), frame=frame, fallback=fallback)


@dataclass
class Replayed:
    """A replayed or forked run, where its trace went, and how its model calls were served."""

    outcome: RunOutcome
    model: ReplayChatModel
    trace_path: Path | None


def replay(
    trace: Trace,
    media: Media,
    topology: Topology,
    prompts: PromptSet,
    model: ReplayChatModel,
    trace_dir: str | Path | None = None,
    checkpointer=None,
    on_step=None,
    backend: BackendSpec | None = None,
    **overrides,
) -> Replayed:
    """Re-execute the graph with answers served from the recording, and record it (parent: the run).

    `backend` is the spec of the fallback model, if any (recorded in the new trace's run spec).
    """
    state = start_state(trace, graph=topology.name, **overrides)
    return _rerun(trace, media, topology, prompts, model, trace_dir, checkpointer, on_step, state, backend=backend)


def answering_backend(trace: Trace, fallback: BackendSpec | None = None) -> BackendSpec:
    """The backend a replay's run spec names: the fallback, else the one that made the recording."""
    if fallback is not None:
        return fallback
    if trace.spec is not None:
        return trace.spec.backend
    return BackendSpec(name="recording", options={"parent": trace.run_id})


def _rerun(
    trace, media, topology, prompts, model, trace_dir, checkpointer, on_step, state, fork=None, edit=None, backend=None
):
    """A replay or a fork: the one run path, answered from the recording, its trace naming the parent."""
    spec = None
    if trace_dir is not None:  # a gate sweep's what-if replays write nothing: no spec to build
        spec = build_spec(
            command="fork" if fork else "replay",
            backend=answering_backend(trace, backend),
            topology=topology,
            prompts=prompts,
            settings=state.settings,
            parent=trace.run_id,
        )
    done = run_and_record(
        media,
        state.settings,
        model,
        topology=topology,
        prompts=prompts,
        trace_dir=trace_dir,
        checkpointer=checkpointer,
        on_step=on_step,
        state=state,
        after_generate=edit,
        inputs=trace.inputs,
        lineage=Lineage(parent=trace.run_id, fork=fork, backend=f"replay of {trace.run_id}"),
        spec=spec,
    )
    return Replayed(done.outcome, model, done.trace_path)


def fork(
    trace: Trace,
    media: Media,
    topology: Topology,
    prompts: PromptSet,
    model: ReplayChatModel,
    boxes: dict[int, list[int]],
    trace_dir: str | Path,
    edits: list[str],
    checkpointer=None,
    on_step=None,
    backend: BackendSpec | None = None,
) -> Replayed:
    """Fork after Generate with edited sources: Generate is served from the recording, then the
    checkpoint after it is edited and the graph runs on, each branch from its edited record."""

    def edit(state: RunState) -> dict:
        known = {s.index for s in state.sources}
        unknown = set(boxes) - known
        if unknown:
            raise MissingRecording(f"the run has no source {sorted(unknown)[0]} (it has {len(known)})")
        return {
            "sources": [
                s.model_copy(update={"initial_box": boxes[s.index], "box": boxes[s.index]}) if s.index in boxes else s
                for s in state.sources
            ]
        }

    fork = Fork(from_node="generate", edits=edits)
    state = start_state(trace, graph=topology.name)
    return _rerun(trace, media, topology, prompts, model, trace_dir, checkpointer, on_step, state, fork, edit, backend)
