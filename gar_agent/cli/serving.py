"""The options of a served model (`--backend openai`), shared by `gar run` and `gar eval`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from gar_agent.models.backends import BackendError

BaseUrlOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--base-url",
        metavar="URL",
        help="--backend openai: server root, e.g. http://localhost:8000/v1; repeat it to spread requests over servers.",
    ),
]
ApiKeyEnvOpt = Annotated[
    Optional[str],
    typer.Option(help="--backend openai: environment variable holding the API key (default OPENAI_API_KEY)."),
]
MaxRetriesOpt = Annotated[
    Optional[int],
    typer.Option(min=0, max=100, help="--backend openai: retries of a call after 429/5xx/timeouts (default 5)."),
]
RequestTimeoutOpt = Annotated[
    Optional[float],
    typer.Option(min=0.001, help="--backend openai: seconds one request may take before it is retried (default 300)."),
]
RetryBackoffOpt = Annotated[
    Optional[float],
    typer.Option(
        min=0.0, help="--backend openai: seconds before the first retry, doubling (with jitter) after (default 1)."
    ),
]

MaxResponseBytesOpt = Annotated[
    Optional[int],
    typer.Option(
        min=1024,
        help="--backend openai: longest answer body read from a server, bytes; a longer one fails its call "
        "(default 16777216, 16 MiB).",
    ),
]


def served_options(
    backend: str,
    base_url: list[str] | None,
    api_key_env: str | None,
    max_retries: int | None,
    request_timeout: float | None,
    retry_backoff: float | None = None,
    max_response_bytes: int | None = None,
) -> dict:
    """The resolve_backend options of `--backend openai`; BackendError when given to another backend."""
    given = {
        "--base-url": base_url,
        "--api-key-env": api_key_env,
        "--max-retries": max_retries,
        "--request-timeout": request_timeout,
        "--retry-backoff": retry_backoff,
        "--max-response-bytes": max_response_bytes,
    }
    if backend != "openai":
        used = [flag for flag, value in given.items() if value not in (None, [])]
        if used:
            raise BackendError(f"{used[0]} is for --backend openai, not --backend {backend}: drop it or switch backend")
        return {}
    return {
        "base_urls": base_url,
        "api_key_env": api_key_env,
        "max_retries": max_retries,
        "request_timeout": request_timeout,
        "backoff_base": retry_backoff,
        "max_response_bytes": max_response_bytes,
    }
