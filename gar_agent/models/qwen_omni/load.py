"""Loading a local Qwen-Omni checkpoint: which family it is, its processor, its thinker, once per process.

A hub id that is neither cached nor reachable fails at once; a path that is not a checkpoint, or a
checkpoint of another architecture, is one line (ModelLoadError, a BackendError).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gar_agent.errors import BackendError


class ModelLoadError(BackendError, RuntimeError):
    """The checkpoint cannot be loaded (missing path, wrong architecture, missing package).

    A BackendError, so the command line reports it as one line like any other bad --backend.
    """


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
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise ModelLoadError(f"no config.json in {path}: give --model a transformers checkpoint directory")
        return json.loads(cfg_file.read_text())
    if _looks_like_path(model):
        raise ModelLoadError(f"model path {path} does not exist: give --model an existing checkpoint dir or a hub id")
    from transformers import PretrainedConfig

    _check_reachable(model)
    try:
        cfg, _ = PretrainedConfig.get_config_dict(model)
    except OSError as e:
        raise ModelLoadError(
            f"cannot fetch config of {model!r} (not a local path; hub unreachable?): {str(e).splitlines()[0]}; "
            "download it and give --model its local dir"
        ) from None
    return cfg


def _check_reachable(model: str) -> None:
    """A hub id that is neither cached nor downloadable fails at once (not after ~30 s of retries)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return  # cached: loads without the network
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if not constants.HF_HUB_OFFLINE:
        try:
            socket.create_connection((host, 443), timeout=3).close()
            return
        except OSError:
            pass
    raise ModelLoadError(
        f"{model} is not in the local Hugging Face cache and {host} cannot be reached (offline): download it "
        f"where there is network (huggingface-cli download {model}) and give --model its local dir"
    )


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
    media_path_ok: bool | None = None  # the media cache path reproduces this processor (checked once)


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
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its "Loading weights" bar would cut through gar's step view
        try:
            net = model_cls.from_pretrained(model, **kwargs)
        except (OSError, ImportError) as e:
            raise ModelLoadError(f"cannot load {model}: {str(e).splitlines()[0]}") from None
        finally:
            hf_logging.enable_progress_bar()
        if quantization is None and device != "cpu":
            net = net.to(device)
        net.eval()
        loaded = _Loaded(net, processor, family, time.perf_counter() - t0, threading.Lock())
        _LOADED[key] = loaded
        return loaded
