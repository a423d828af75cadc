"""Prefill each clip's shared prefix once; every call continues from a copy of its KV cache.

A clip's calls all start with the same tokens: the turn header and the media (hundreds of image and
audio tokens), then differ in their text. The prefix up to the end of the last media item is
prefilled once (the vision and audio encoders run once with it) and its per-layer keys and values are
kept in a small LRU. A call then prefills only its own text on top of a copy, and `n` samples share
that single prefill: the cache is repeated `n` times instead of the prompt being prefilled `n` times.

Positions: Qwen2.5-Omni uses 3-D rotary positions (time, height, width) from `get_rope_index`; a
generate that starts from a non-empty cache would otherwise reuse `rope_deltas` left on the model by
the previous call. So the positions of the whole prompt are computed here exactly as the model
computes them for a fresh prompt and passed to every forward and to `generate` (which then steps
them by one per new token, as it does for its own).

Memory, Qwen2.5-Omni-7B in bf16: 28 layers x (K and V) x 4 KV heads x 128 x 2 bytes = 56 KiB per
token. A 640x360 frame is 299 image tokens (resized to 644x364, 14 px patches merged 2x2) and 3 s of
audio 75 tokens: about 380 prefix tokens = 21 MiB, plus 4.4 MiB for the audio-only prefix of the
audio call. The default LRUs (8 prefixes, 4 clips; 8 whole prompts of ~450 tokens) hold at most
about 300 MiB at that size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gar_agent.models.qwen_omni.media import LRUCache
from gar_agent.models.qwen_omni.prompt import Prompt, media_inputs


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, dtype_bytes: int = 2) -> int:
    """Bytes of keys and values one token occupies in the KV cache."""
    return num_layers * 2 * num_kv_heads * head_dim * dtype_bytes


@dataclass
class PrefixEntry:
    """The keys and values of one prefilled prefix, per layer [1, kv heads, length, head dim]."""

    layers: list[tuple[Any, Any]]
    length: int

    @property
    def nbytes(self) -> int:
        """Memory held by this entry."""
        return sum(int(k.numel() * k.element_size() + v.numel() * v.element_size()) for k, v in self.layers)


class PrefixCache:
    """Recently prefilled prefixes by `Prompt.prefix_key`, and whole prompts by `Prompt.prompt_key`.

    A whole prompt asked again (one call per vote, as the released code votes: every call of a pass is
    the same prompt) then runs only its last token. Each map holds at most `max_items` (LRU).
    """

    def __init__(self, max_items: int = 8):
        self.entries: LRUCache[str, PrefixEntry] = LRUCache(max_items)
        self.prompts: LRUCache[str, PrefixEntry] = LRUCache(max_items)

    @property
    def nbytes(self) -> int:
        """Memory held by the cached prefixes and prompts."""
        return sum(e.nbytes for e in [*self.entries.values(), *self.prompts.values()])


@dataclass
class Row:
    """One prompt made ready to generate: its KV cache up to the last prompt token, and positions."""

    prompt: Prompt
    layers: list[tuple[Any, Any]]  # KV of ids[:-1]
    positions: Any  # [3, 1, len(ids)] rotary positions of the whole prompt
    cached_tokens: int  # prompt tokens read from the prefix cache
    prefilled_tokens: int  # prompt tokens run through the model for this row (last token not counted)


def rope_positions(net: Any, prompt: Prompt) -> Any:
    """The 3-D rotary positions of a prompt, as the model computes them for a fresh forward: [3, 1, T]."""
    import torch

    ids = torch.tensor([prompt.ids], dtype=torch.long)
    positions, _ = net.get_rope_index(
        ids, prompt.image_grid, None, torch.ones_like(ids), False, prompt.audio_frames, None
    )
    return positions


def _new_cache(net: Any, layers: list[tuple[Any, Any]] | None = None) -> Any:
    from transformers import DynamicCache

    # the layers are copied into the new cache (update concatenates), so the stored prefix stays intact
    return DynamicCache(ddp_cache_data=layers, config=net.config) if layers else DynamicCache(config=net.config)


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _forward(net: Any, prompt: Prompt, positions: Any, start: int, stop: int, cache: Any, media: dict) -> Any:
    """Run ids[start:stop] on top of `cache` (which holds ids[:start]); returns the grown cache."""
    import torch

    device = net.device
    ids = torch.tensor([prompt.ids[start:stop]], dtype=torch.long, device=device)
    text = torch.arange(start, stop, device=device).view(1, 1, -1)
    position_ids = torch.cat([text, positions[:, :, start:stop].to(device)], dim=0)
    mask = torch.ones((1, stop), dtype=torch.long, device=device)
    out = net.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True, **media)
    return out.cache


def _media_tensors(net: Any, prompt: Prompt) -> dict:
    media = media_inputs(prompt.images, prompt.audios)
    for key, value in media.items():
        floating = key in ("pixel_values", "input_features")
        media[key] = value.to(net.device, dtype=net.dtype) if floating else value.to(net.device)
    return media


def prepare_row(net: Any, prompt: Prompt, prefixes: PrefixCache) -> Row:
    """The prompt's KV up to its last token: the prefix from the cache (or prefilled now), then its text."""
    positions = rope_positions(net, prompt)
    end = len(prompt.ids) - 1  # generate runs the last prompt token itself: it needs one uncached input
    whole = prefixes.prompts.get(prompt.prompt_key)
    if whole is not None:
        return Row(prompt, whole.layers, positions, end, 0)
    p = min(prompt.prefix_len, end)
    prefilled, cached = 0, 0
    if p > 0:
        entry = prefixes.entries.get(prompt.prefix_key)
        if entry is None:
            grown = _forward(net, prompt, positions, 0, p, _new_cache(net), _media_tensors(net, prompt))
            entry = PrefixEntry(_layers(grown), p)
            prefixes.entries.put(prompt.prefix_key, entry)
            prefilled += p
        else:
            cached = p
        cache = _new_cache(net, entry.layers)
    else:
        cache = _new_cache(net)
    if end > p:
        cache = _forward(net, prompt, positions, p, end, cache, {})
        prefilled += end - p
    layers = _layers(cache)
    prefixes.prompts.put(prompt.prompt_key, PrefixEntry(layers, end))  # batch_inputs copies, never writes
    return Row(prompt, layers, positions, cached, prefilled)


def batch_inputs(net: Any, rows: list[Row], copies: int, pad_id: int) -> dict[str, Any]:
    """generate() inputs for rows, each repeated `copies` times: left-padded ids, mask, positions, KV cache."""
    import torch
    import torch.nn.functional as F

    device = net.device
    width = max(len(r.prompt.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    rope = torch.zeros((3, len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        t = len(r.prompt.ids)
        ids[i, width - t :] = torch.tensor(r.prompt.ids)
        mask[i, width - t :] = 1
        rope[:, i, width - t :] = r.positions[:, 0]
    text = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    positions = torch.cat([text[None], rope], dim=0)  # the [text; t; h; w] layout generate builds itself

    layers = []
    for layer in range(len(rows[0].layers)):
        ks, vs = [], []
        for r in rows:
            k, v = r.layers[layer]
            pad = (width - 1) - k.shape[-2]  # cached length is len(ids) - 1; pad on the left like the ids
            ks.append(F.pad(k, (0, 0, pad, 0)))
            vs.append(F.pad(v, (0, 0, pad, 0)))
        k, v = torch.cat(ks), torch.cat(vs)
        if copies > 1:
            k, v = k.repeat_interleave(copies, dim=0), v.repeat_interleave(copies, dim=0)
        layers.append((k, v))
    if copies > 1:
        ids, mask = ids.repeat_interleave(copies, dim=0), mask.repeat_interleave(copies, dim=0)
        positions = positions.repeat_interleave(copies, dim=1)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": positions.to(device),
        "cache": _new_cache(net, layers),
    }
