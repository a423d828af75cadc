"""Qwen2.5-Omni (and Qwen3-Omni) run locally through transformers, as a LangChain chat model.

Loading lives in load.py, message conversion in content.py, the media and prefix
caches and the batcher in their own modules; this one is the chat model that joins them.

Only the thinker (text out) is loaded: the talker is not needed for localization answers. Weights are
loaded once per process on first use and shared by every instance with the same load settings.
"""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from gar_agent.models.qwen_omni.batch import DynamicBatcher
from gar_agent.models.qwen_omni.content import ContentBlockError, to_conversation
from gar_agent.models.qwen_omni.load import _LOADED, ModelLoadError, _get_processor, _load, _Loaded, _read_config
from gar_agent.models.qwen_omni.media import MediaCache
from gar_agent.models.qwen_omni.prefix import PrefixCache, batch_inputs, prepare_row
from gar_agent.models.qwen_omni.prompt import Prompt, build_prompt, processor_mismatch, stock_inputs

# ---- the chat model --------------------------------------------------------------------------------


class ChatQwenOmni(BaseChatModel):
    """Qwen2.5-Omni / Qwen3-Omni thinker, local through transformers; images and audio in, text out."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model: str = "Qwen/Qwen2.5-Omni-7B"
    """Hub id or local checkpoint directory."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weight dtype; auto takes the checkpoint's."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """auto: cuda when available, else cpu."""
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] | None = None
    """None: flash_attention_2 when flash_attn is installed and the device is cuda, else sdpa."""
    quantization: Literal["4bit", "8bit"] | None = None
    """bitsandbytes weight quantization (needs the bitsandbytes package)."""
    max_new_tokens: int = Field(default=512, alias="max_tokens")
    """Default generation budget per answer."""
    temperature: float | None = None
    """Default temperature; None or 0 is greedy."""
    top_p: float | None = None
    """Default nucleus sampling mass when sampling."""
    stop: list[str] | None = None
    """Default stop strings (the answer is cut at the first)."""
    media_cache: bool = True
    """Encode each clip's media once (False: the processor on every call, as the released code; no prefix cache)."""
    prefix_cache: bool = True
    """Prefill each clip's shared prefix (turn header + media) once and continue every call from its KV cache."""
    batch_size: int = Field(default=1, ge=1, le=256)
    """Concurrent calls with equal generation settings run as one generate, up to this many prompts (1: off)."""
    batch_wait_s: float = Field(default=0.02, ge=0.0)
    """How long an idle device waits for further calls to join a batch."""
    cache_clips: int = Field(default=4, ge=0)
    """Clips whose encoded media and prefix KV caches are kept (LRU; 0 keeps none)."""

    _engine_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _media_cache: MediaCache | None = PrivateAttr(default=None)
    _prefixes: PrefixCache | None = PrivateAttr(default=None)
    _batcher: DynamicBatcher[_Sampling] | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "qwen-omni"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dtype": self.dtype,
            "device": self.device,
            "attn_implementation": self.attn_implementation,
            "quantization": self.quantization,
            "max_new_tokens": self.max_new_tokens,
        }

    @property
    def supports_multiple_samples(self) -> bool:
        """n samples of one prompt come from one generate call."""
        return True

    @property
    def concurrent_samples(self) -> int:
        """Samples worth having in flight: one device runs one generate at a time, batch_size clips per batch."""
        return self.batch_size

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="transformers",
            ls_model_name=kwargs.get("model") or self.model,
            ls_model_type="chat",
            ls_max_tokens=kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens)),
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- loading

    def _resolved_settings(self) -> tuple[str, str, str, str, str | None]:
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        attn = self.attn_implementation
        if attn is None:
            attn = "flash_attention_2" if device == "cuda" and importlib.util.find_spec("flash_attn") else "sdpa"
        path = Path(self.model).expanduser()
        model = str(path.resolve()) if path.exists() else self.model
        return model, self.dtype, device, attn, self.quantization

    def _loaded(self) -> _Loaded:
        return _load(*self._resolved_settings())

    @property
    def processor(self) -> Any:
        """The checkpoint's processor (loads no weights)."""
        return _get_processor(self._resolved_settings()[0])

    def model_frame(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image of this size as the model sees it after the processor's resize."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        ip = self.processor.image_processor
        size = ip.size
        lo = size["shortest_edge"] if "shortest_edge" in size else size["min_pixels"]
        hi = size["longest_edge"] if "longest_edge" in size else size["max_pixels"]
        h, w = smart_resize(height, width, factor=ip.patch_size * ip.merge_size, min_pixels=lo, max_pixels=hi)
        return w, h

    # -- generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._run([messages], stop=stop, **kwargs)[0]

    def generate_many(self, prompts: Sequence[Sequence[BaseMessage]], **kwargs: Any) -> list[ChatResult]:
        """Answer several different prompts in one left-padded generate call; one ChatResult each."""
        stop = kwargs.pop("stop", None)
        return self._run([list(p) for p in prompts], stop=stop, **kwargs)

    def _run(self, prompts: list[list[BaseMessage]], stop: list[str] | None = None, **kwargs: Any) -> list[ChatResult]:
        unknown = set(kwargs) - {"temperature", "top_p", "n", "max_new_tokens", "max_tokens", "seed", "model"}
        if unknown:
            raise TypeError(f"ChatQwenOmni got unsupported generation kwargs: {sorted(unknown)}")
        temperature = kwargs.get("temperature", self.temperature)
        top_p = kwargs.get("top_p", self.top_p)
        n = int(kwargs.get("n") or 1)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        sampled_t = float(temperature) if temperature is not None and temperature > 0 else None
        sample = sampled_t is not None
        gen = _Sampling(
            sample=sample,
            temperature=sampled_t,
            top_p=float(top_p) if sample and top_p is not None else None,
            n=n,
            max_new_tokens=int(kwargs.get("max_new_tokens") or kwargs.get("max_tokens") or self.max_new_tokens),
            seed=kwargs.get("seed"),
        )
        stop = stop if stop is not None else self.stop

        loaded = self._loaded()
        # the media cache and prefix KV know Qwen2.5-Omni's layout only
        if loaded.family != "qwen2_5_omni" or not self.media_cache or loaded.media_path_ok is False:
            outs = self._execute_stock(loaded, gen, [to_conversation(p) for p in prompts])
        else:
            t0 = time.perf_counter()
            media_cache, batcher = self._engine(loaded)
            built = [build_prompt(loaded.processor, media_cache, to_conversation(p, refs=True)) for p in prompts]
            processor_s = time.perf_counter() - t0
            if loaded.media_path_ok is None and not self._media_path_ok(loaded, prompts, built):
                return self._run(prompts, stop=stop, **kwargs)  # now on the processor path
            if batcher is not None and gen.seed is None:  # a seeded call keeps its own RNG stream: alone
                outs = batcher.submit(gen, built)
            else:
                outs = self._execute(loaded, gen, built)
            for o in outs:
                o.processor_s = processor_s
        return [self._chat_result(loaded, o, gen, stop) for o in outs]

    def _media_path_ok(self, loaded: _Loaded, prompts: list[list[BaseMessage]], built: list[Prompt]) -> bool:
        """Check once per checkpoint, on the first prompt with media, that our inputs equal the processor's."""
        for messages, prompt in zip(prompts, built, strict=True):
            if prompt.images or prompt.audios:
                why = processor_mismatch(loaded.processor, prompt, to_conversation(messages))
                loaded.media_path_ok = why is None
                if why is not None:
                    warnings.warn(
                        f"{self.model}: media cache disabled ({why} from the processor's); "
                        "every call runs the processor, without the prefix cache",
                        stacklevel=2,
                    )
                break
        return loaded.media_path_ok is not False

    # -- execution: one generate for a batch of prompts

    def _engine(self, loaded: _Loaded) -> tuple[MediaCache, DynamicBatcher[_Sampling] | None]:
        """This instance's media cache, prefix cache and batcher (made on first use)."""
        with self._engine_lock:
            if self._media_cache is None:
                self._media_cache = MediaCache(loaded.processor, max_items=2 * self.cache_clips)
                # two prefixes a clip: image + audio (generate, analyze, refine) and audio alone (audio call)
                self._prefixes = PrefixCache(max_items=2 * self.cache_clips)
                if self.batch_size > 1:
                    self._batcher = DynamicBatcher(
                        lambda gen, prompts: self._execute(loaded, gen, prompts), self.batch_size, self.batch_wait_s
                    )
            return self._media_cache, self._batcher

    @property
    def encoded_media(self) -> MediaCache | None:
        """Encoded media of recent clips (None before the first call)."""
        return self._media_cache

    @property
    def prefix_kv_cache(self) -> PrefixCache | None:
        """Prefilled prefixes of recent clips (None before the first call)."""
        return self._prefixes

    @property
    def batcher(self) -> DynamicBatcher[_Sampling] | None:
        """The dynamic batcher when batch_size > 1 (None before the first call)."""
        return self._batcher

    def _gen_kwargs(self, gen: _Sampling) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "do_sample": gen.sample}
        if gen.sample:
            kw["temperature"] = gen.temperature
            if gen.top_p is not None:
                kw["top_p"] = gen.top_p
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def _execute(self, loaded: _Loaded, gen: _Sampling, prompts: list[Prompt]) -> list[_RowOut]:
        """Answer built prompts in one left-padded generate (from the prefix KV cache when enabled)."""
        import torch

        net = loaded.model
        pad = loaded.processor.tokenizer.pad_token_id
        # greedy answers of one prompt are identical: compute once, repeat when reading out
        copies = gen.n if gen.sample else 1
        kw = self._gen_kwargs(gen)
        with loaded.lock, torch.inference_mode():
            t0 = time.perf_counter()
            if self.prefix_cache:
                prefixes = self._prefixes
                assert prefixes is not None  # _engine makes it before the first call reaches here
                rows = [prepare_row(net, p, prefixes) for p in prompts]
                inputs = batch_inputs(net, rows, copies, pad)
                cached = [r.cached_tokens for r in rows]
                # each copy runs the last prompt token itself in generate's first step
                prefilled = [r.prefilled_tokens + copies for r in rows]
            else:
                inputs = stock_inputs(prompts, pad)
                for key, value in inputs.items():
                    floating = key in ("pixel_values", "input_features")
                    inputs[key] = value.to(net.device, dtype=net.dtype) if floating else value.to(net.device)
                if copies > 1:
                    kw["num_return_sequences"] = copies
                cached = [0] * len(prompts)
                prefilled = [len(p.ids) * copies for p in prompts]
            if gen.seed is not None:
                torch.manual_seed(int(gen.seed))
            out = net.generate(**inputs, **kw)
            wall = time.perf_counter() - t0
        sequences = getattr(out, "sequences", out)
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :].cpu()
        proc = loaded.processor
        image_id, audio_id = getattr(proc, "image_token_id", None), getattr(proc, "audio_token_id", None)
        return [
            _RowOut(
                tokens=[new_tokens[i * copies + j].tolist() for j in range(copies)],
                input_tokens=len(p.ids),
                image_tokens=p.ids.count(image_id) if image_id is not None else 0,
                audio_tokens=p.ids.count(audio_id) if audio_id is not None else 0,
                cached_tokens=cached[i],
                prefill_tokens=prefilled[i],
                media_cached=p.media_cached,
                wall_s=wall,
                batch_prompts=len(prompts),
            )
            for i, p in enumerate(prompts)
        ]

    def _execute_stock(self, loaded: _Loaded, gen: _Sampling, conversations: list[list[dict]]) -> list[_RowOut]:
        """The processor's own path (no media or prefix cache): for families other than Qwen2.5-Omni."""
        import torch

        proc, net = loaded.processor, loaded.model
        copies = gen.n if gen.sample else 1
        kw = self._gen_kwargs(gen)
        if copies > 1:
            kw["num_return_sequences"] = copies
        t0 = time.perf_counter()
        with loaded.lock:
            inputs = proc.apply_chat_template(
                conversations,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                processor_kwargs={"padding": True},
            )
            inputs = inputs.to(net.device)
            for key in ("pixel_values", "input_features"):
                if key in inputs and net.dtype != torch.float32:
                    inputs[key] = inputs[key].to(net.dtype)
            processor_s = time.perf_counter() - t0
            if gen.seed is not None:
                torch.manual_seed(int(gen.seed))
            with torch.inference_mode():
                out = net.generate(**inputs, **kw)
        wall = time.perf_counter() - t0
        sequences = getattr(out, "sequences", out)
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :].cpu()
        mask, ids = inputs["attention_mask"].cpu(), inputs["input_ids"].cpu()
        image_id, audio_id = getattr(proc, "image_token_id", None), getattr(proc, "audio_token_id", None)
        outs = []
        for i in range(len(conversations)):
            row_ids = ids[i][mask[i].bool()]
            outs.append(
                _RowOut(
                    tokens=[new_tokens[i * copies + j].tolist() for j in range(copies)],
                    input_tokens=int(mask[i].sum()),
                    image_tokens=int((row_ids == image_id).sum()) if image_id is not None else 0,
                    audio_tokens=int((row_ids == audio_id).sum()) if audio_id is not None else 0,
                    cached_tokens=0,
                    prefill_tokens=int(mask[i].sum()) * copies,
                    media_cached=0,
                    wall_s=wall,
                    batch_prompts=len(conversations),
                    processor_s=processor_s,
                )
            )
        return outs

    def _chat_result(self, loaded: _Loaded, row: _RowOut, gen: _Sampling, stop: list[str] | None) -> ChatResult:
        """One prompt's answers as LangChain generations, with usage and timing."""
        tok = loaded.processor.tokenizer
        cfg = loaded.model.generation_config
        end_ids: set[int] = set()
        for src in (cfg.eos_token_id, cfg.pad_token_id, tok.pad_token_id):
            end_ids.update(src if isinstance(src, (list, tuple)) else ([] if src is None else [src]))
        call_id = str(uuid.uuid4())
        wall = row.wall_s + row.processor_s
        meta_common = {
            "model_name": self.model,
            "wall_s": wall,
            "processor_s": row.processor_s,
            "image_tokens": row.image_tokens,
            "audio_tokens": row.audio_tokens,
            "cached_input_tokens": row.cached_tokens,
            "prefill_tokens": row.prefill_tokens,
            "media_cached": row.media_cached,
            "batch_prompts": row.batch_prompts,
            "num_samples": gen.n,
            "call_id": call_id,
        }
        generations = []
        for j in range(gen.n):
            tokens = row.tokens[j if gen.sample else 0]
            count = next((k for k, t in enumerate(tokens) if t in end_ids), None)
            finish = "stop" if count is not None else "length"
            count = len(tokens) if count is None else count
            text = tok.decode(tokens[:count], skip_special_tokens=True)
            if stop:
                cut = min((text.find(s) for s in stop if s and s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            # the prompt is counted once per call, on its first sample
            in_tok = row.input_tokens if j == 0 else 0
            cached = row.cached_tokens if j == 0 else 0
            msg = AIMessage(
                content=text,
                usage_metadata={
                    "input_tokens": in_tok,
                    "output_tokens": count,
                    "total_tokens": in_tok + count,
                    "input_token_details": {"cache_read": cached},
                },
                response_metadata={**meta_common, "finish_reason": finish},
                id=f"{call_id}-{j}",
            )
            generations.append(ChatGeneration(message=msg, generation_info={"finish_reason": finish}))
        return ChatResult(generations=generations, llm_output={"model_name": self.model, "wall_s": wall})


@dataclass(frozen=True)
class _Sampling:
    """Generation settings of a call; calls with equal settings can share one batched generate."""

    sample: bool
    temperature: float | None
    top_p: float | None
    n: int
    max_new_tokens: int
    seed: int | None


@dataclass
class _RowOut:
    """One prompt's generated tokens and accounting."""

    tokens: list[list[int]]
    input_tokens: int
    image_tokens: int
    audio_tokens: int
    cached_tokens: int
    prefill_tokens: int
    media_cached: int
    wall_s: float
    batch_prompts: int
    processor_s: float = 0.0


__all__ = ["_LOADED", "ChatQwenOmni", "ContentBlockError", "ModelLoadError", "_read_config", "to_conversation"]
