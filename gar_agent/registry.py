"""Backends by name (as lm-eval's `register_model`): a leaf module, so nothing looks into adapters.

`@register_backend("qwen-omni", "qwen")` registers a factory `(model, **options) -> BaseChatModel`;
`backend_factory(name)` finds it. Adapters are imported by their factories only when asked for, so
naming a backend never loads torch or langchain-openai for another one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Factory = Callable[..., Any]

_BACKENDS: dict[str, Factory] = {}
_PRIMARY: list[str] = []  # the first name of each backend, in registration order


def register_backend(*names: str) -> Callable[[Factory], Factory]:
    """Register a backend factory under one or more `--backend` names."""

    def add(factory: Factory) -> Factory:
        _PRIMARY.append(names[0])
        for name in names:
            _BACKENDS[name] = factory
        return factory

    return add


def backend_factory(name: str) -> Factory | None:
    """The factory registered under a name, or None."""
    return _BACKENDS.get(name)


def backend_names() -> list[str]:
    """The backends' names (aliases left out), in registration order, for help texts and errors."""
    return list(_PRIMARY)
