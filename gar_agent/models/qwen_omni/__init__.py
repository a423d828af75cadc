"""Qwen2.5-Omni (and Qwen3-Omni) run locally through transformers, as one LangChain chat model.

One unit in seven modules: `model` (the chat model that joins the rest), `load` (which checkpoint
family, its processor and thinker, once per process), `content` (LangChain messages -> the chat
template's items), `media` (each clip's image and audio features, cached by content hash), `prompt`
(our own prompt build, checked against the stock processor), `prefix` (the shared-prefix KV cache)
and `batch` (concurrent calls into one generate). torch and transformers load only on first use.
"""

from __future__ import annotations

from gar_agent.models.qwen_omni.model import (
    _LOADED,
    ChatQwenOmni,
    ContentBlockError,
    ModelLoadError,
    _read_config,
    to_conversation,
)

__all__ = ["_LOADED", "ChatQwenOmni", "ContentBlockError", "ModelLoadError", "_read_config", "to_conversation"]
