"""The options of the local model (`--backend qwen-omni`), shared by `gar run` and `gar eval`."""

from __future__ import annotations

from typing import Annotated

import typer

from gar_agent.models.backends import BackendError

LOCAL_BACKENDS = ("qwen-omni", "qwen")

PrefixCacheOpt = Annotated[
    bool,
    typer.Option(
        "--prefix-cache/--no-prefix-cache",
        help="--backend qwen-omni: prefill each clip's image+audio prefix once and reuse its KV cache (default on).",
    ),
]
BatchSizeOpt = Annotated[
    int,
    typer.Option(
        min=1,
        max=256,
        help="--backend qwen-omni: run the same stage of up to B samples as one batched generate (default 1).",
    ),
]


def local_options(backend: str, prefix_cache: bool = True, batch_size: int = 1) -> dict:
    """The resolve_backend options of the local model; BackendError when given to another backend."""
    if backend not in LOCAL_BACKENDS:
        used = [
            f for f, default in (("--no-prefix-cache", prefix_cache), ("--batch-size", batch_size == 1)) if not default
        ]
        if used:
            raise BackendError(
                f"{used[0]} is for the local --backend qwen-omni, not --backend {backend}: drop it or switch backend"
            )
        return {}
    options: dict = {"prefix_cache": prefix_cache}
    if batch_size > 1:
        options["batch_size"] = batch_size
    return options
