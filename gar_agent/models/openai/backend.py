"""A served model over the OpenAI-compatible chat-completions API (vLLM, SGLang, OpenAI itself).

`ChatOpenAIServed` is a LangChain chat model that uses LangChain's own `ChatOpenAI` to build each
request and read each answer: it turns standard image blocks into `image_url` data URIs and audio
blocks into `input_audio`, passes `n` and returns one generation per choice, and maps
`usage.prompt_tokens_details.cached_tokens` to `usage_metadata["input_token_details"]["cache_read"]`.
What it adds for a benchmark against a fleet of servers:

- the requests of a process share one event loop and aiohttp connections
  (gar_agent/models/openai/transport.py), so hundreds can be in flight without a thread each (the
  OpenAI SDK's client, which ChatOpenAI would send with, is not used: its per-request CPU was the
  ceiling on throughput);
- several base URLs, least loaded first, a clip's calls kept on one server for its prefix cache,
  and a circuit breaker per server (gar_agent/models/openai/servers.py);
- fault handling of our own: bounded retries with exponential backoff
  and jitter on 429 (honouring `Retry-After`), 408/409/425, 5xx, connection errors and timeouts,
  a per-attempt time limit, all configurable, so tests can use millisecond backoffs;
- a cap on the body read (`max_response_bytes`, 16 MiB; `--max-response-bytes`): a huge or endless
  body fails its call with `MalformedResponse` without being read (not retried: a server that sent
  one runaway answer to a request would send it again);
- one-line errors that say whose fault it is (gar_agent/models/openai/faults.py): `BackendUnavailable`
  after the last retry, `MalformedResponse` for a body that is JSON but not a chat completion (not
  retried: an error for that call, never a crash), `BackendRefused` for 401/403/404; `gar eval`
  runs such samples again on the next run of the same command. A 400 is this request's fault.
  A 200 whose body is not JSON at all is most often a body cut off on its way (a proxy, a crashed
  worker), so it is retried like a 5xx and counts toward the server's breaker.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import time
import weakref
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from gar_agent.errors import BackendError
from gar_agent.models.openai.faults import BackendRefused, BackendUnavailable, MalformedResponse
from gar_agent.models.openai.servers import AllServersDown, Server, ServerPool
from gar_agent.models.openai.transport import MAX_RESPONSE_BYTES, BodyTooLarge, LoopSession

log = logging.getLogger(__name__)

# Status codes worth another try: request timeout, conflict, too early, rate limit; 5xx below.
RETRY_STATUS = {408, 409, 425, 429}
# Refusals that every request of the run would get (key, permission, model name): a setup fault.
SETUP_STATUS = {401, 403, 404}
# Qwen2.5-Omni's image processor (preprocessor_config.json of the 7B/3B checkpoints): the model
# answers in the frame of the image resized to multiples of patch_size * merge_size = 28.
QWEN25_FRAME = {"factor": 28, "min_pixels": 3136, "max_pixels": 12845056}


def qwen_resize(width: int, height: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 12845056):
    """(width, height) after Qwen2-VL-style resizing: sides rounded to `factor`, area within bounds."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return w, h


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait (`retry-after-ms`, `Retry-After` as seconds or a date)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        value = lower.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None  # an unreadable header: fall back to our own backoff


class _Failed(Exception):
    """One attempt failed: what to say, whether to try again, whether it counts toward the server's breaker."""

    def __init__(self, text: str, *, retry: bool, dead: bool, wait: float | None = None):
        super().__init__(text)
        self.text, self.retry, self.dead, self.wait = text, retry, dead, wait


def status_failure(status: int, headers: Mapping[str, str], body: bytes) -> _Failed:
    """An HTTP error answer: 408/409/425/429 and 5xx are worth another try; a 5xx also says the server is sick."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    text = " ".join(str(message or body[:200].decode("utf-8", "replace") or "no message").split())
    retry = status in RETRY_STATUS or status >= 500
    return _Failed(f"HTTP {status}: {text[:200]}", retry=retry, dead=status >= 500, wait=retry_after_s(headers))


def clip_key(messages: list[BaseMessage]) -> int | None:
    """A cheap key for the clip a request is about: the hash of its audio data (else its first media).

    Every call of a clip carries the audio (the audio-only call too) as the same base64 string
    object, whose hash Python computes once.
    """
    first = None
    for message in messages:
        for block in message.content if isinstance(message.content, list) else ():
            if isinstance(block, dict) and isinstance(block.get("base64"), str):
                if block.get("type") == "audio":
                    return hash(block["base64"])
                first = first if first is not None else hash(block["base64"])
    return first


class ChatOpenAIServed(BaseChatModel):
    """A model behind one or more OpenAI-compatible servers; images and audio in, text out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    """The model name the servers serve (vLLM: the path or id given to `vllm serve`)."""
    base_urls: list[str] = Field(min_length=1)
    """Server roots, e.g. http://gpu-node-1:8000/v1; requests go to the least loaded."""
    api_key: SecretStr = SecretStr("EMPTY")
    """Bearer key (vLLM without --api-key accepts any)."""
    max_retries: int = Field(default=5, ge=0)
    """Further attempts after a transient fault; then the call fails with BackendUnavailable."""
    request_timeout: float = Field(default=300.0, gt=0)
    """Seconds one attempt may take (connect, send, wait for the answer)."""
    backoff_base: float = Field(default=1.0, ge=0)
    """First retry waits about this long (with jitter); each further one twice as long."""
    backoff_max: float = Field(default=60.0, ge=0)
    """Ceiling of one backoff wait, and of a server's Retry-After."""
    max_tokens: int | None = 512
    """Answer budget per sample (None: the server's default)."""
    max_connections: int = Field(default=1024, ge=1)
    """HTTP connections per server (keep-alive included): at least the requests kept in flight."""
    image_frame: Literal["auto", "qwen2.5", "pixels"] = "auto"
    """Coordinates the model answers in: auto picks qwen2.5 for a Qwen2.5 model name."""
    send_stage_headers: bool = True
    """Send X-Gar-Stage / X-Gar-Source headers (for server logs, proxies and test servers)."""
    affinity_slack: int = Field(default=2, ge=0)
    """A clip's next call stays on its server while that has at most this many more requests in flight."""
    breaker_failures: int = Field(default=5, ge=1)
    """Transient faults in a row (connection errors, timeouts, 5xx) after which a server is skipped."""
    breaker_cooloff: float = Field(default=5.0, ge=0)
    """Seconds a failing server is skipped before one request probes it (doubling, up to 120 s)."""
    max_response_bytes: int = Field(default=MAX_RESPONSE_BYTES, ge=1024)
    """Longest body read from a server; a longer one fails its call (MalformedResponse) unread."""

    _codec: ChatOpenAI = PrivateAttr()
    _pool: ServerPool = PrivateAttr()
    _http: LoopSession = PrivateAttr()

    def model_post_init(self, __context: Any) -> None:
        """The request/answer codec, the server pool, and the (lazily started) loop with its clients."""
        # ChatOpenAI only builds payloads and reads answers here: it never sends (max_retries and
        # timeouts of its own clients do not apply)
        self._codec = ChatOpenAI(
            model=self.model,
            base_url=self.base_urls[0],
            api_key=self.api_key,
            max_retries=0,
            max_tokens=self.max_tokens,
            use_responses_api=False,
        )
        self._pool = ServerPool(
            self.base_urls,
            affinity_slack=self.affinity_slack,
            failures=self.breaker_failures,
            cooloff_s=self.breaker_cooloff,
        )
        self._http = LoopSession(self.max_connections, len(self.base_urls))
        # close the connections when the model goes away (a CLI run, a test), not only on close()
        weakref.finalize(self, self._http.close)

    @property
    def _llm_type(self) -> str:
        return "openai-served"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "base_urls": self.base_urls, "max_tokens": self.max_tokens}

    @property
    def supports_multiple_samples(self) -> bool:
        """The votes of a pass come from one request with `n`."""
        return True

    def model_frame(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the image as the served model sees it (Qwen2.5 resizes to multiples of 28)."""
        frame = self.image_frame
        if frame == "auto":
            frame = "qwen2.5" if "qwen2.5" in self.model.lower().replace("_", ".") else "pixels"
        return qwen_resize(width, height, **QWEN25_FRAME) if frame == "qwen2.5" else (width, height)

    @property
    def background_loop(self):
        """The event loop this process's requests wait on; `gar eval` runs its samples there too."""
        return self._http.loop

    def server_stats(self) -> list[dict]:
        """Per server: requests sent, failed attempts, requests in flight now, whether it is skipped."""
        return self._pool.stats()

    def backend_down(self) -> str | None:
        """Why no server can take a request now (every circuit breaker open), else None."""
        return self._pool.down()

    def close(self) -> None:
        """Close the HTTP connections and stop this process's request loop."""
        self._http.close()

    def _delay(self, attempt: int, asked: float | None = None) -> float:
        """How long to wait before attempt `attempt + 1`: the server's Retry-After, else backoff."""
        if asked is not None:
            return min(asked, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)  # jitter: retries of many clients do not align

    # -- generation

    def _prepare(self, messages: list[BaseMessage], stop, run_manager, kwargs: dict) -> tuple[bytes, dict, int | None]:
        """(JSON body, headers, clip key), built in the caller: ChatOpenAI's own payload."""
        meta = (run_manager.metadata if run_manager else None) or {}
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.api_key.get_secret_value()}",
        }
        if self.send_stage_headers and meta.get("gar_stage") is not None:
            headers.update({"X-Gar-Stage": str(meta["gar_stage"]), "X-Gar-Source": str(meta.get("gar_source"))})
        headers.update(kwargs.pop("extra_headers", None) or {})
        payload = self._codec._get_request_payload(messages, stop=stop, **kwargs)
        return json.dumps(payload).encode(), headers, clip_key(messages)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._http.run(self._exchange(*self._prepare(messages, stop, run_manager, kwargs)))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await self._http.arun(self._exchange(*self._prepare(messages, stop, run_manager, kwargs)))

    async def _attempt(self, server: Server, body: bytes, headers: dict) -> ChatResult:
        """One POST to one server: the answer, or _Failed / MalformedResponse / a refusal."""
        try:
            answer = await self._http.post(
                server.url + "/chat/completions", body, headers, self.request_timeout, self.max_response_bytes
            )
        except BodyTooLarge as e:
            raise MalformedResponse(
                f"{server.url} answered with a {e}; raise --max-response-bytes if the answers are that long"
            ) from None
        except asyncio.TimeoutError:  # aiohttp's read timeouts are asyncio's too
            raise _Failed("timed out", retry=True, dead=True) from None
        except aiohttp.ClientError as e:  # refused, reset, dropped mid-answer
            raise _Failed(f"connection failed ({type(e).__name__})", retry=True, dead=True) from None
        if answer.status >= 400:
            failure = status_failure(answer.status, answer.headers, answer.body)
            if failure.retry:
                raise failure
            if answer.status in SETUP_STATUS:
                raise BackendRefused(f"{server.url} refused the request: {failure.text}")
            # e.g. 400: this request (its prompt, its media) is what the server rejects
            raise RuntimeError(f"{server.url} refused the request: {failure.text}")
        try:
            completion = json.loads(answer.body)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            # not JSON at all: most often a body cut off on its way (a proxy, a worker that died mid-write)
            why = " ".join(str(e).split())[:120] if isinstance(e, ValueError) else "nested too deep"
            text = f"HTTP 200 with a body that is not JSON ({why}; {len(answer.body)} bytes)"
            raise _Failed(text, retry=True, dead=True) from None
        try:
            result = self._codec._create_chat_result(completion)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            # the server answered 200 with something that is not a chat completion
            text = " ".join(str(e).split())[:200]
            raise MalformedResponse(
                f"{server.url} answered with a malformed body ({type(e).__name__}: {text})"
            ) from None
        if not result.generations:
            raise MalformedResponse(f"{server.url} answered with no choices")
        return result

    async def _exchange(self, body: bytes, headers: dict, clip: int | None) -> ChatResult:
        """Send one request (on the loop), retrying transient faults; the answer as a ChatResult."""
        server: Server | None = None
        start = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                server = self._pool.acquire(avoid=server if attempt else None, clip=clip)
            except AllServersDown as e:  # nothing to send to: a failed attempt, backed off as usual
                if last:
                    raise BackendUnavailable(f"{e} (attempt {attempt + 1} of {self.max_retries + 1})") from None
                await asyncio.sleep(self._delay(attempt))
                continue
            try:
                result = await self._attempt(server, body, headers)
            except _Failed as e:
                # a 429 is a live server asking us to slow down; the rest counts toward its breaker
                self._pool.release(server, e.text, dead=e.dead)
                if last:
                    raise BackendUnavailable(
                        f"{server.url}: {e.text} (attempt {attempt + 1} of {self.max_retries + 1})"
                    ) from None
                wait = self._delay(attempt, e.wait)
                log.info("%s: %s; retrying in %.2f s", server.url, e.text, wait)
                await asyncio.sleep(wait)
                continue
            except Exception as e:
                self._pool.release(server, str(e)[:200])
                raise
            self._pool.release(server)
            for gen in result.generations:
                gen.message.response_metadata.update(server=server.url, attempts=attempt + 1)
            result.llm_output = {**(result.llm_output or {}), "server": server.url, "attempts": attempt + 1}
            log.debug("%s answered in %.3f s", server.url, time.perf_counter() - start)
            return result
        raise AssertionError("unreachable")  # the loop returns or raises


def from_options(
    model: str | None,
    base_urls: list[str] | None = None,
    api_key_env: str | None = None,
    max_retries: int | None = None,
    request_timeout: float | None = None,
    backoff_base: float | None = None,
    max_response_bytes: int | None = None,
    **extra: Any,
) -> ChatOpenAIServed:
    """Build the served model from command-line options; BackendError (one line) for bad ones."""
    urls = list(base_urls or [])
    if not urls and os.environ.get("OPENAI_BASE_URL"):
        urls = [os.environ["OPENAI_BASE_URL"]]
    if not urls:
        raise BackendError(
            "--backend openai needs --base-url URL (e.g. http://localhost:8000/v1; repeat it for several servers)"
        )
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise BackendError(f"--base-url {url!r} is not an http(s) URL: give e.g. http://localhost:8000/v1")
    if not model:
        raise BackendError("--backend openai needs --model NAME: the name the server serves, e.g. Qwen/Qwen2.5-Omni-7B")
    env = api_key_env or "OPENAI_API_KEY"
    key = os.environ.get(env)
    if key is None and api_key_env:
        raise BackendError(f"--api-key-env {env}: that environment variable is not set; export it or drop the flag")
    options: dict[str, Any] = {"model": model, "base_urls": urls, "api_key": SecretStr(key or "EMPTY"), **extra}
    if max_retries is not None:
        options["max_retries"] = max_retries
    if request_timeout is not None:
        options["request_timeout"] = request_timeout
    if backoff_base is not None:
        options["backoff_base"] = backoff_base
    if max_response_bytes is not None:
        options["max_response_bytes"] = max_response_bytes
    return ChatOpenAIServed(**options)
