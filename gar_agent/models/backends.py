"""Resolve `--backend` to a LangChain chat model.

- `scripted:FILE`: canned answers per stage (`ScriptedChatModel`).
- `qwen-omni`: local Qwen2.5-Omni through our adapter (`--model` picks the checkpoint).
- `openai`: a model served over the OpenAI-compatible API, e.g. vLLM (`ChatOpenAIServed`;
  `--base-url`, `--model`, retries and timeouts come as options).
- `module:attr`: any BaseChatModel: an instance, a subclass (built with no arguments) or a
  zero-argument factory, imported from PYTHONPATH or the current directory.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gar_agent.errors import BackendError
from gar_agent.registry import backend_factory, backend_names, register_backend

# LangChain is imported when a model is built, not when a backend is named: `gar --help` lists the
# registered names from here without paying for it.
if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

DEFAULT_QWEN = "Qwen/Qwen2.5-Omni-7B"


__all__ = ["BackendError", "resolve_backend"]  # BackendError lives in gar_agent.errors (a leaf: no import cycle)


@register_backend("qwen-omni", "qwen")
def _qwen_omni(model: str | None, **options) -> BaseChatModel:
    from gar_agent.models.qwen_omni import ChatQwenOmni  # torch import only when asked for

    return ChatQwenOmni(model=model or DEFAULT_QWEN, **{k: v for k, v in options.items() if v is not None})


@register_backend("openai")
def _openai(model: str | None, **options) -> BaseChatModel:
    from gar_agent.models.openai import from_options  # langchain-openai only when asked for

    return from_options(model, **options)


def resolve_backend(spec: str, model: str | None = None, **options) -> BaseChatModel:
    """The chat model named by a --backend value."""
    if spec.startswith("scripted:"):
        from gar_agent.models.scripted import ScriptedChatModel

        return ScriptedChatModel.from_file(spec.split(":", 1)[1])
    factory = backend_factory(spec)
    if factory is not None:
        return factory(model, **options)
    if ":" not in spec:
        names = ", ".join(repr(n) for n in backend_names())
        raise BackendError(
            f"--backend {spec!r} is not {names}, 'scripted:FILE' or 'module:attr': use one of those forms"
        )
    return _import_chat_model(spec)


def _import_chat_model(spec: str) -> BaseChatModel:
    from langchain_core.language_models import BaseChatModel

    module_name, attr = spec.rsplit(":", 1)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error inside the user's module is reported, not raised
        raise BackendError(
            f"--backend {spec}: cannot import module {module_name!r} ({type(e).__name__}: {e})"
        ) from None
    if not hasattr(module, attr):
        raise BackendError(f"--backend {spec}: module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    try:
        if (
            inspect.isclass(obj)
            and issubclass(obj, BaseChatModel)
            or callable(obj)
            and not isinstance(obj, BaseChatModel)
        ):
            obj = obj()
    except Exception as e:
        raise BackendError(f"--backend {spec}: building the model failed ({type(e).__name__}: {e})") from None
    if not isinstance(obj, BaseChatModel):
        raise BackendError(f"--backend {spec} gives a {type(obj).__name__}, not a LangChain BaseChatModel")
    return obj
