"""A model served over the OpenAI-compatible API: `backend` (the chat model, its retries and options),
`transport` (aiohttp on the per-process loop), `servers` (which server, circuit breakers) and
`faults` (which failures are the server's, read by `gar eval` for any backend).

The package's name does not shadow the `openai` SDK: every import in gar_agent is absolute. Its
exports load lazily, so `gar eval` importing `is_backend_fault` does not import langchain-openai and
aiohttp unless the served backend is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gar_agent.models.openai.faults import (
    BackendFault,
    BackendRefused,
    BackendUnavailable,
    MalformedResponse,
    is_backend_fault,
)

if TYPE_CHECKING:
    from gar_agent.models.openai.backend import ChatOpenAIServed, from_options, qwen_resize, retry_after_s
    from gar_agent.models.openai.servers import AllServersDown, ServerPool

_LAZY = {
    "ChatOpenAIServed": "backend",
    "from_options": "backend",
    "qwen_resize": "backend",
    "retry_after_s": "backend",
    "AllServersDown": "servers",
    "ServerPool": "servers",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "AllServersDown",
    "BackendFault",
    "BackendRefused",
    "BackendUnavailable",
    "ChatOpenAIServed",
    "MalformedResponse",
    "ServerPool",
    "from_options",
    "is_backend_fault",
    "qwen_resize",
    "retry_after_s",
]
