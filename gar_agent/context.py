"""What every node gets besides the state: the chat model, the decoded media, the prompts.

Passed as LangGraph's run context, so nodes never import an adapter: any BaseChatModel, a replay
of a recording or a served model stands in without touching a node.

Two ways to make one:
- in-process (the CLI, eval, replay, tests): `GarContext(model=..., media=..., prompts=...)` with
  ready objects;
- from a serialisable run configuration, as LangGraph's server (`langgraph dev`, Studio) sends it:
  `{"backend": "scripted:answers.json", "image": "frame.jpg", "audio": "clip.wav"}`. The live
  objects are resolved from it once and cached per process (a model loads once, a clip decodes once).
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from typing import Any

from gar_agent.errors import UserError


class _Resolved:
    """A context field given ready-made, or resolved from the run configuration on first use.

    First use happens inside a node (a worker thread), never while the server builds the context
    on its event loop, so loading a model or decoding a clip blocks nothing.
    """

    def __init__(self, resolve):
        self.resolve = resolve

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return None  # the dataclass default: not given
        if obj.__dict__.get(self.slot) is None:
            with _LOCK:
                if obj.__dict__.get(self.slot) is None:
                    obj.__dict__[self.slot] = self.resolve(obj)
        return obj.__dict__[self.slot]

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


def _resolve_model(ctx: GarContext):
    if not ctx.backend:
        raise UserError("the run context names no model: give 'backend' (e.g. 'scripted:answers.json')")
    return _model(ctx.backend, ctx.model_name)


def _resolve_media(ctx: GarContext):
    if not (ctx.image and ctx.audio):
        raise UserError("the run context names no media: give 'image' and 'audio' paths")
    return _media(ctx.image, ctx.audio, ctx.max_audio_s, *_stamp(ctx.image, ctx.audio))


def _resolve_prompts(ctx: GarContext):
    from gar_agent.prompts import PromptSet

    return PromptSet(ctx.prompts_dir)


_LOCK = threading.RLock()


@dataclass
class GarContext:
    """Run-time resources (not state: they are not saved, and a replay supplies its own)."""

    backend: str | None = None
    """--backend of the chat model to resolve (qwen-omni, openai, scripted:FILE, module:attr)."""
    model_name: str | None = None
    """--model of that backend (a checkpoint, or a served model's name)."""
    image: str | None = None
    """Path of the frame to load."""
    audio: str | None = None
    """Path of the audio to load."""
    prompts_dir: str | None = None
    """Prompt set folder (default: the shipped set)."""
    max_audio_s: float = 30.0
    """Longer audio keeps a centred window of this length."""
    model: Any = _Resolved(_resolve_model)
    """The chat model that answers every stage (resolved from backend/model_name when not given)."""
    media: Any = _Resolved(_resolve_media)
    """The decoded image and audio (loaded from image/audio when not given)."""
    prompts: Any = _Resolved(_resolve_prompts)
    """The prompt templates (read from prompts_dir when not given)."""
    script_order: Any = None
    """Protocol reference with several sources: the released scripts' order across branches
    (protocols/script_order.py), set by Generate for the run."""

    def resolved(self) -> bool:
        """Whether the model, the media and the prompts are ready (given, or resolved already)."""
        return all(self.__dict__.get(slot) is not None for slot in ("_model", "_media", "_prompts"))

    def resolve(self) -> None:
        """Resolve the model, the media and the prompts now (what a node would do on first use)."""
        for name in ("model", "media", "prompts"):
            getattr(self, name)


def _stamp(*paths: str) -> tuple:
    # the cache key includes size and mtime, so an edited file is loaded again
    return tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) if os.path.exists(p) else None for p in paths)


@functools.lru_cache(maxsize=4)
def _model(backend: str, model_name: str | None):
    from gar_agent.models.backends import resolve_backend

    return resolve_backend(backend, model_name)


@functools.lru_cache(maxsize=16)
def _media(image: str, audio: str, max_audio_s: float, *_stamps):
    from gar_agent.media import load_media

    return load_media(image, audio, max_audio_s)
