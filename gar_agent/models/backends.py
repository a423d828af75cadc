"""Resolve `--backend` to a LangChain chat model; the names are entries of `gar_agent.registry.BACKENDS`.

- `scripted:FILE`: canned answers per stage (`ScriptedChatModel`), a registered prefix.
- `qwen-omni`: local Qwen2.5-Omni through our adapter (`--model` picks the checkpoint).
- `openai`: a model served over the OpenAI-compatible API, e.g. vLLM (`ChatOpenAIServed`;
  `--base-url`, `--model`, retries and timeouts come as options).
- any name a researcher's module registered with `@register_backend("name")`.
- `module:attr`: any BaseChatModel: an instance, a subclass (built with no arguments) or a
  zero-argument factory, imported from PYTHONPATH or the current directory.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from gar_agent.errors import BackendError
from gar_agent.registry import BACKENDS, load_user

# LangChain is imported when a model is built, not when a backend is named: `gar --help` lists the
# registered names (gar_agent.registry) without paying for it.
if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

DEFAULT_QWEN = "Qwen/Qwen2.5-Omni-7B"


__all__ = ["BackendError", "resolve_backend"]  # BackendError lives in gar_agent.errors (a leaf: no import cycle)


def qwen_omni(model: str | None, **options) -> BaseChatModel:
    """`--backend qwen-omni`."""
    from gar_agent.models.qwen_omni import ChatQwenOmni  # torch import only when asked for

    return ChatQwenOmni(model=model or DEFAULT_QWEN, **{k: v for k, v in options.items() if v is not None})


def openai(model: str | None, **options) -> BaseChatModel:
    """`--backend openai`."""
    from gar_agent.models.openai import from_options  # langchain-openai only when asked for

    return from_options(model, **options)


def scripted(path: str, model: str | None = None, **options) -> BaseChatModel:
    """`--backend scripted:FILE` (the model and options are the served backends'; a script has none)."""
    from gar_agent.models.scripted import ScriptedChatModel

    return ScriptedChatModel.from_file(path)


def resolve_backend(spec: str, model: str | None = None, **options) -> BaseChatModel:
    """The chat model named by a --backend value: a registered name, `prefix:REST` or `module:attr`."""
    if (handler := BACKENDS.prefix(spec)) is not None:
        make, rest = handler
        return make(rest, model, **options)
    factory = BACKENDS.find(spec)
    if factory is not None:
        return factory(model, **options)
    if ":" not in spec:
        raise BackendError(str(BACKENDS.error(spec)))
    return _import_chat_model(spec)


def _import_chat_model(spec: str) -> BaseChatModel:
    from langchain_core.language_models import BaseChatModel

    obj = load_user(spec, "--backend", BackendError)
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
