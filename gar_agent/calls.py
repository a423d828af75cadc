"""One model call: a rendered prompt plus media in, raw answers and usage out, as a `ModelCall`.

Every call is tagged with its stage and source in LangChain run metadata (`gar_stage`,
`gar_source`), so a scripted model or a replay of a recording can serve it without the node
knowing which model answers. Any `BaseChatModel` works: samples are asked for in one call (`n`)
only when the model says it can, and topped up with further calls when fewer come back.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.config import get_config

from gar_agent.media import Media
from gar_agent.state import ModelCall, Stage, Usage

GREEDY = {"temperature": 0.0}


def _memoize_content_block_types() -> None:
    """langchain-core recomputes typing.get_type_hints of every content-block type each time it checks
    a block (about 0.1 ms a check, ~20 checks a multimodal call: 2 ms of CPU per call, a third of
    a served call's client cost). The answer is fixed for the process: compute it once."""
    from langchain_core.messages import content

    original = getattr(content, "_get_data_content_block_types", None)
    if callable(original) and not hasattr(original, "cache_info"):
        content._get_data_content_block_types = functools.cache(original)


_memoize_content_block_types()


@dataclass
class Request:
    """What a node asks of the model."""

    stage: Stage
    source: int | None
    template: str
    prompt: str
    media: tuple[str, ...] = ("image", "audio")  # what is attached, in the order it is sent
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    history: list[BaseMessage] = field(default_factory=list)  # earlier turns (a repair's question)
    system: str | None = None  # the system message, sent first
    max_tokens: int | None = None  # most new tokens per answer (None: the model's own default)
    # answers of this stage and source the run already holds in its state (None: not known); a model
    # answering from a list (scripted) starts there, so a run re-run from any checkpoint (Studio,
    # `threads.update_state` over `langgraph dev`) gets the answers the original run got, as a replay does
    answered: int | None = None


def supports_samples(model: BaseChatModel) -> bool:
    """Whether one call can return several samples (our adapters; OpenAI-style `n`)."""
    return bool(getattr(model, "supports_multiple_samples", False)) or "n" in getattr(type(model), "model_fields", {})


def user_message(media: Media, request: Request) -> HumanMessage:
    """The request's text after its media, as LangChain standard content blocks, in the request's order."""
    blocks: list = [media.image_block() if kind == "image" else media.audio_block() for kind in request.media]
    blocks.append({"type": "text", "text": request.prompt})
    return HumanMessage(content=blocks)


def _sampling(request: Request, n: int) -> dict:
    if request.temperature <= 0:
        kwargs = dict(GREEDY)
    else:
        kwargs = {"temperature": request.temperature, "top_p": request.top_p}
    if n > 1:
        kwargs["n"] = n
    if request.max_tokens:
        kwargs["max_tokens"] = request.max_tokens
    return kwargs


def _usage(messages: list[AIMessage], n_asked: int) -> tuple[int, int, int]:
    """(input, output, cached input) tokens of one call's answers."""
    # a dict from any provider (LangChain's UsageMetadata keys, but values are whatever the server sent)
    metas: list[dict[str, Any]] = [u for m in messages if (u := getattr(m, "usage_metadata", None))]
    if not metas:
        return 0, 0, 0
    # OpenAI-style servers copy the whole call's usage onto every sample: count it once.
    if n_asked > 1 and len(metas) == len(messages) and all(m == metas[0] for m in metas):
        metas = metas[:1]
    # LangChain's standard place for prompt-cache hits: input_token_details.cache_read
    cached = sum((m.get("input_token_details") or {}).get("cache_read", 0) or 0 for m in metas)
    return sum(m.get("input_tokens", 0) for m in metas), sum(m.get("output_tokens", 0) for m in metas), cached


def _thread_id() -> str | None:
    """The LangGraph thread this call belongs to (one clip's run), when called inside a graph."""
    try:
        return get_config().get("configurable", {}).get("thread_id")
    except RuntimeError:  # outside a runnable context (a direct call)
        return None


def answer_text(message: BaseMessage) -> str:
    """The text of an answer, whatever content form the model used."""
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)


class _Asking:
    """One call in progress: the messages sent, its ModelCall being filled, how many samples are still due.

    `ask` and `aask` differ only in how they wait for the model; what is sent and what is recorded
    is decided here, once.
    """

    def __init__(self, model: BaseChatModel, media: Media, request: Request) -> None:
        if request.history:  # a repair: the original question came first, this turn is the repair text
            messages = [*request.history, HumanMessage(content=request.prompt)]
        else:
            messages = [user_message(media, request)]
        if request.system and not isinstance(messages[0], SystemMessage):
            messages.insert(0, SystemMessage(content=request.system))
        self.messages = messages
        self.metadata = {
            "gar_stage": request.stage,
            "gar_source": request.source,
            "gar_template": request.template,
            "gar_thread": _thread_id(),
            "gar_answered": request.answered,
        }
        self.request = request
        self.call = ModelCall(  # the call's entry in the run's calls channel, filled as answers come
            stage=request.stage,
            source=request.source,
            template=request.template,
            prompt=request.prompt,
            system=request.system,
            media=list(request.media),  # a repair re-sends the question with its media
            temperature=request.temperature,
            top_p=request.top_p,
            n=request.n,
        )
        self.many_per_call = supports_samples(model)  # n samples in one call
        self.usage = Usage()
        self.reported: list[float] = []  # model-reported call times (a replay reports the recorded ones)
        self.start = time.perf_counter()
        self.want = 0

    def next_kwargs(self) -> dict | None:
        """The sampling arguments of the next model call, or None when every sample is in or the call failed."""
        due = self.request.n - len(self.call.answers)
        if due <= 0 or self.call.error:
            return None
        self.want = due if self.many_per_call else 1
        if self.request.answered is not None:  # a top-up call continues after the answers already in
            self.metadata["gar_answered"] = self.request.answered + len(self.call.answers)
        return _sampling(self.request, self.want)

    def failed(self, error: BaseException) -> None:
        """Whatever the model raised (any adapter, any server): this call failed."""
        self.call.error = f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]

    def took(self, result) -> None:
        """Record what one model call returned."""
        # Our own code from here: a bug is a crash with its traceback, not a failed call.
        gens = [g.message for g in result.generations[0] if hasattr(g, "message")]
        if not gens:
            self.call.error = "the model returned no answer"
            return
        call, want = self.call, self.want
        call.answers.extend(answer_text(m) for m in gens[:want])
        meta = gens[0].response_metadata
        if isinstance(meta.get("wall_s"), (int, float)):
            self.reported.append(float(meta["wall_s"]))
        if isinstance(meta.get("server"), str):  # a served backend says where and after how many tries
            call.server = meta["server"]
        if isinstance(meta.get("attempts"), int):
            call.attempts = (call.attempts or 0) + meta["attempts"]
        tokens_in, tokens_out, cached = _usage(gens, want)
        self.usage = self.usage + Usage(
            model_calls=1, input_tokens=tokens_in, output_tokens=tokens_out, cached_input_tokens=cached
        )

    def done(self) -> ModelCall:
        """The finished ModelCall, with its usage and wall time."""
        usage, calls_made = self.usage, self.usage.model_calls
        measured = time.perf_counter() - self.start
        usage.wall_s = round(sum(self.reported) if calls_made and len(self.reported) == calls_made else measured, 6)
        self.call.usage = usage
        return self.call


def ask(model: BaseChatModel, media: Media, request: Request) -> ModelCall:
    """Send one request (topping up samples as needed) and keep everything that came back (a ModelCall)."""
    asking = _Asking(model, media, request)
    while (kwargs := asking.next_kwargs()) is not None:
        try:
            result = model.generate([asking.messages], metadata=asking.metadata, **kwargs)
        except Exception as e:  # noqa: BLE001 - the model's failure is this call's, recorded
            asking.failed(e)
        else:
            asking.took(result)
    return asking.done()


async def aask(model: BaseChatModel, media: Media, request: Request) -> ModelCall:
    """`ask` under an event loop: the model's own async path (a served model needs no thread per call)."""
    asking = _Asking(model, media, request)
    while (kwargs := asking.next_kwargs()) is not None:
        try:
            result = await model.agenerate([asking.messages], metadata=asking.metadata, **kwargs)
        except Exception as e:  # noqa: BLE001 - the model's failure is this call's, recorded
            asking.failed(e)
        else:
            asking.took(result)
    return asking.done()


def question_history(media: Media, request: Request, answer: str) -> list[BaseMessage]:
    """The turns a repair request continues from: (the system message,) the question, the unusable answer."""
    system = [SystemMessage(content=request.system)] if request.system else []
    return [*system, user_message(media, request), AIMessage(content=answer)]
