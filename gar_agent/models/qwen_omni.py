"""Qwen2.5-Omni (and Qwen3-Omni) run locally through transformers, as a LangChain chat model.

Only the thinker (text out) is loaded: the talker is not needed for localization answers. Weights are
loaded once per process on first use and shared by every instance with the same load settings.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from gar_agent.media import decode_audio
from gar_agent.models.backends import BackendError


class ModelLoadError(BackendError, RuntimeError):
    """The checkpoint cannot be loaded (missing path, wrong architecture, missing package).

    A BackendError, so the command line reports it as one line like any other bad --backend.
    """


class ContentBlockError(ValueError):
    """A message content block this adapter cannot turn into model input."""


# model_type -> (family, is a composite checkpoint with `thinker.` weights)
_SUPPORTED = {
    "qwen2_5_omni_thinker": ("qwen2_5_omni", False),
    "qwen2_5_omni": ("qwen2_5_omni", True),
    "qwen3_omni_moe_thinker": ("qwen3_omni_moe", False),
    "qwen3_omni_moe": ("qwen3_omni_moe", True),
}


def _family_classes(family: str) -> tuple[Any, Any, Any]:
    """(model class, processor class, composite config class) of a family; ModelLoadError if absent."""
    import transformers

    names = {
        "qwen2_5_omni": (
            "Qwen2_5OmniThinkerForConditionalGeneration",
            "Qwen2_5OmniProcessor",
            "Qwen2_5OmniConfig",
        ),
        "qwen3_omni_moe": (
            "Qwen3OmniMoeThinkerForConditionalGeneration",
            "Qwen3OmniMoeProcessor",
            "Qwen3OmniMoeConfig",
        ),
    }[family]
    try:
        return tuple(getattr(transformers, n) for n in names)  # type: ignore[return-value]
    except AttributeError:
        raise ModelLoadError(
            f"transformers {transformers.__version__} has no {names[0]}; upgrade transformers to load {family}"
        ) from None


def _looks_like_path(model: str) -> bool:
    # a hub id is "org/name"; anything else with a path shape is meant as a local directory
    return (
        model.startswith(("/", "./", "../", "~", "\\")) or model.count("/") > 1 or (len(model) > 1 and model[1] == ":")
    )


def _read_config(model: str) -> dict:
    """The checkpoint's config.json as a dict, without loading weights."""
    path = Path(model).expanduser()
    if path.exists():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise ModelLoadError(f"no config.json in {path}: give --model a transformers checkpoint directory")
        return json.loads(cfg.read_text())
    if _looks_like_path(model):
        raise ModelLoadError(f"model path {path} does not exist: give --model an existing checkpoint dir or a hub id")
    from transformers import PretrainedConfig

    try:
        cfg, _ = PretrainedConfig.get_config_dict(model)
    except OSError as e:
        raise ModelLoadError(
            f"cannot fetch config of {model!r} (not a local path; hub unreachable?): {str(e).splitlines()[0]}; "
            "download it and give --model its local dir"
        ) from None
    return cfg


def _resolve_family(model: str) -> tuple[str, bool]:
    cfg = _read_config(model)
    model_type = cfg.get("model_type")
    if model_type not in _SUPPORTED:
        raise ModelLoadError(
            f"{model} is a {model_type!r} checkpoint (architectures {cfg.get('architectures')}); "
            f"supported model_type: {', '.join(sorted(_SUPPORTED))}; give --model a Qwen-Omni checkpoint"
        )
    return _SUPPORTED[model_type]


@dataclass
class _Loaded:
    model: Any
    processor: Any
    family: str
    load_s: float
    lock: threading.Lock


_LOAD_LOCK = threading.Lock()
_LOADED: dict[tuple, _Loaded] = {}
_PROCESSORS: dict[str, Any] = {}


def _get_processor(model: str) -> Any:
    """The checkpoint's processor, loaded once per process."""
    with _LOAD_LOCK:
        if model not in _PROCESSORS:
            family, _ = _resolve_family(model)
            _, processor_cls, _ = _family_classes(family)
            _PROCESSORS[model] = processor_cls.from_pretrained(model)
        return _PROCESSORS[model]


def _load(model: str, dtype: str, device: str, attn: str, quantization: str | None) -> _Loaded:
    """Load (once per settings) the thinker and its processor."""
    key = (model, dtype, device, attn, quantization)
    if key in _LOADED:
        return _LOADED[key]
    processor = _get_processor(model)  # also validates path and architecture
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        import torch

        family, composite = _resolve_family(model)
        model_cls, _, composite_cfg_cls = _family_classes(family)
        kwargs: dict[str, Any] = {
            "use_safetensors": True,
            "attn_implementation": attn,
            "dtype": dtype if dtype == "auto" else getattr(torch, dtype),
        }
        if composite:
            # hub checkpoints hold the whole omni model; its thinker sub-config describes the weights we load
            kwargs["config"] = composite_cfg_cls.from_pretrained(model).thinker_config
        if quantization is not None:
            if importlib.util.find_spec("bitsandbytes") is None:
                raise ModelLoadError(f"quantization={quantization!r} needs bitsandbytes: pip install bitsandbytes")
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = (
                BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
                if quantization == "4bit"
                else BitsAndBytesConfig(load_in_8bit=True)
            )
            kwargs["device_map"] = device
        t0 = time.perf_counter()
        try:
            net = model_cls.from_pretrained(model, **kwargs)
        except (OSError, ImportError) as e:
            raise ModelLoadError(f"cannot load {model}: {str(e).splitlines()[0]}") from None
        if quantization is None and device != "cpu":
            net = net.to(device)
        net.eval()
        loaded = _Loaded(net, processor, family, time.perf_counter() - t0, threading.Lock())
        _LOADED[key] = loaded
        return loaded


# ---- content blocks -> processor conversation items ------------------------------------------------


def _bytes_from_url(url: str) -> bytes | str:
    """Bytes of a data: URI, else a local filesystem path (file:// stripped)."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header:
            return unquote(data).encode()
        return base64.b64decode(data)
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    if url.startswith(("http://", "https://")):
        raise ContentBlockError(f"remote media URLs are not fetched by the local model: {url[:80]}")
    return url


def _load_image(src: bytes | str) -> Any:
    from PIL import Image

    if isinstance(src, str):
        if not Path(src).is_file():
            raise ContentBlockError(f"image file not found: {src}")
        with Image.open(src) as im:
            return im.convert("RGB")
    with Image.open(io.BytesIO(src)) as im:
        return im.convert("RGB")


def _load_audio(src: bytes | str) -> Any:
    if isinstance(src, str) and not Path(src).is_file():
        raise ContentBlockError(f"audio file not found: {src}")
    return decode_audio(src)


def _media_source(block: dict, kind: str) -> bytes | str:
    """The bytes or path of an image/audio block in any of LangChain's standard forms."""
    b64 = block.get("base64") or (block.get("data") if block.get("source_type", "base64") == "base64" else None)
    if isinstance(b64, str):
        return base64.b64decode(b64)
    for key in ("url", "path", "file_path"):
        if isinstance(block.get(key), str):
            return _bytes_from_url(block[key])
    raise ContentBlockError(f"{kind} block has no base64, url or path: keys {sorted(block)}")


def _convert_block(block: Any, role: str) -> dict | None:
    """One LangChain content block -> one processor item ({"type": "text"|"image"|"audio", ...})."""
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if not isinstance(block, dict):
        raise ContentBlockError(f"unsupported content block of type {type(block).__name__}")
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "image":
        return {"type": "image", "image": _load_image(_media_source(block, "image"))}
    if kind == "image_url":
        ref = block.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str):
            raise ContentBlockError("image_url block without a url")
        return {"type": "image", "image": _load_image(_bytes_from_url(url))}
    if kind == "audio":
        return {"type": "audio", "audio": _load_audio(_media_source(block, "audio"))}
    if kind == "input_audio":
        data = (block.get("input_audio") or {}).get("data")
        if not isinstance(data, str):
            raise ContentBlockError("input_audio block without base64 data")
        return {"type": "audio", "audio": _load_audio(base64.b64decode(data))}
    if role == "assistant" and kind in ("reasoning", "tool_call", "tool_call_chunk"):
        return None  # not part of what the model reads back
    raise ContentBlockError(
        f"unsupported content block type {kind!r} (supported: text, image, image_url, audio, input_audio)"
    )


_ROLES = {"system": "system", "human": "user", "user": "user", "ai": "assistant", "assistant": "assistant"}


def to_conversation(messages: Sequence[BaseMessage]) -> list[dict]:
    """LangChain messages -> the processor's chat-template conversation with decoded media."""
    conversation = []
    for msg in messages:
        role = _ROLES.get(msg.role if isinstance(msg, ChatMessage) else msg.type)
        if role is None:
            raise ContentBlockError(f"unsupported message type {msg.type!r} (system, human and ai only)")
        blocks = [msg.content] if isinstance(msg.content, str) else msg.content
        items = [item for b in blocks if (item := _convert_block(b, role)) is not None]
        conversation.append({"role": role, "content": items})
    return conversation


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
        import torch

        unknown = set(kwargs) - {"temperature", "top_p", "n", "max_new_tokens", "max_tokens", "seed", "model"}
        if unknown:
            raise TypeError(f"ChatQwenOmni got unsupported generation kwargs: {sorted(unknown)}")
        temperature = kwargs.get("temperature", self.temperature)
        top_p = kwargs.get("top_p", self.top_p)
        n = int(kwargs.get("n") or 1)
        max_new = int(kwargs.get("max_new_tokens") or kwargs.get("max_tokens") or self.max_new_tokens)
        seed = kwargs.get("seed")
        stop = stop if stop is not None else self.stop
        sample = bool(temperature) and temperature > 0
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")

        conversations = [to_conversation(p) for p in prompts]
        loaded = self._loaded()
        proc, net = loaded.processor, loaded.model
        tok = proc.tokenizer
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
            if "pixel_values" in inputs and net.dtype != torch.float32:
                inputs["pixel_values"] = inputs["pixel_values"].to(net.dtype)
            if "input_features" in inputs and net.dtype != torch.float32:
                inputs["input_features"] = inputs["input_features"].to(net.dtype)
            gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": sample}
            if sample:
                gen_kwargs.update(temperature=float(temperature), num_return_sequences=n)
                if top_p is not None:
                    gen_kwargs["top_p"] = float(top_p)
            else:
                # greedy answers of one prompt are identical: compute once, repeat below
                gen_kwargs.update(temperature=None, top_p=None, top_k=None)
            if seed is not None:
                torch.manual_seed(int(seed))
            with torch.inference_mode():
                out = net.generate(**inputs, **gen_kwargs)
        wall = time.perf_counter() - t0
        sequences = getattr(out, "sequences", out)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = sequences[:, prompt_len:].cpu()
        per_prompt = n if sample else 1

        end_ids = set()
        for src in (net.generation_config.eos_token_id, net.generation_config.pad_token_id, tok.pad_token_id):
            end_ids.update(src if isinstance(src, (list, tuple)) else ([] if src is None else [src]))
        mask = inputs["attention_mask"].cpu()
        ids = inputs["input_ids"].cpu()
        image_id = getattr(proc, "image_token_id", None)
        audio_id = getattr(proc, "audio_token_id", None)

        results = []
        for i in range(len(prompts)):
            row_ids = ids[i][mask[i].bool()]
            input_tokens = int(mask[i].sum())
            call_id = str(uuid.uuid4())
            meta_common = {
                "model_name": self.model,
                "wall_s": wall,
                "image_tokens": int((row_ids == image_id).sum()) if image_id is not None else 0,
                "audio_tokens": int((row_ids == audio_id).sum()) if audio_id is not None else 0,
                "num_samples": n,
                "call_id": call_id,
            }
            generations = []
            for j in range(n):
                row = new_tokens[i * per_prompt + (j if sample else 0)].tolist()
                count = next((k for k, t in enumerate(row) if t in end_ids), None)
                finish = "stop" if count is not None else "length"
                count = len(row) if count is None else count
                text = tok.decode(row[:count], skip_special_tokens=True)
                if stop:
                    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
                    if cut >= 0:
                        text, finish = text[:cut], "stop"
                in_tok = input_tokens if j == 0 else 0
                msg = AIMessage(
                    content=text,
                    usage_metadata={
                        "input_tokens": in_tok,
                        "output_tokens": count,
                        "total_tokens": in_tok + count,
                    },
                    response_metadata={**meta_common, "finish_reason": finish},
                    id=f"{call_id}-{j}",
                )
                generations.append(ChatGeneration(message=msg, generation_info={"finish_reason": finish}))
            results.append(ChatResult(generations=generations, llm_output={"model_name": self.model, "wall_s": wall}))
        return results
