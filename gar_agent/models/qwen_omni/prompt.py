"""A chat conversation -> the token ids and media tensors Qwen-Omni's thinker reads.

This does what `processor.apply_chat_template(..., tokenize=True)` does, with the media taken from
the clip's `MediaCache` instead of re-encoded: render the chat template, widen each `<|IMAGE|>` /
`<|AUDIO|>` placeholder to its run of tokens, tokenize. It also marks the prompt's shared prefix:
everything up to the end of its last media item, which every call of a clip repeats.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from gar_agent.models.qwen_omni.media import EncodedAudio, EncodedImage, MediaCache, MediaRef


@dataclass
class Prompt:
    """One prompt, tokenized, with its media in prompt order."""

    ids: list[int]
    images: list[EncodedImage]
    audios: list[EncodedAudio]
    prefix_len: int
    """Tokens up to and including the last media item's end token (0: no media)."""
    prefix_key: str
    """Hash of the prefix tokens and the media they hold: equal keys, equal prefix KV."""
    prompt_key: str
    """Hash of all tokens but the last and the media: equal keys, equal KV of the whole prompt."""
    media_cached: int
    """Media items served from the media cache."""

    @property
    def image_grid(self) -> Any:
        """image_grid_thw of this prompt's images (None without images)."""
        import torch

        return torch.stack([im.grid_thw for im in self.images]) if self.images else None

    @property
    def audio_frames(self) -> Any:
        """Feature frames of each audio item (None without audio)."""
        import torch

        return torch.tensor([a.n_frames for a in self.audios], dtype=torch.long) if self.audios else None


def _placeholders(processor: Any) -> dict[str, str]:
    return {processor.image_token: "image", processor.audio_token: "audio"}


def build_prompt(processor: Any, cache: MediaCache, conversation: list[dict]) -> Prompt:
    """Tokenize a conversation whose media items are `{"type": kind, "ref": MediaRef}`."""
    refs: list[MediaRef] = [
        item["ref"] for msg in conversation for item in msg["content"] if item["type"] in ("image", "audio")
    ]
    # the template renders one placeholder per media item; it needs only the item's type
    shown = [
        {**msg, "content": [{"type": i["type"]} if "ref" in i else i for i in msg["content"]]} for msg in conversation
    ]
    text = processor.apply_chat_template(shown, tokenize=False, add_generation_prompt=True)
    images: list[EncodedImage] = []
    audios: list[EncodedAudio] = []
    cached = 0
    for ref in refs:
        enc, hit = cache.encode(ref)
        cached += hit
        (images if ref.kind == "image" else audios).append(enc)  # type: ignore[arg-type]

    kinds = _placeholders(processor)
    it_images, it_audios = iter(images), iter(audios)  # placeholders come in item order, per kind

    def widen(match: re.Match) -> str:
        token = match.group(0)
        enc = next(it_images) if kinds[token] == "image" else next(it_audios)
        return token * enc.n_tokens

    pattern = "|".join(re.escape(t) for t in kinds)
    expanded = re.sub(pattern, widen, text)
    ids: list[int] = processor.tokenizer(expanded, add_special_tokens=False)["input_ids"]

    tok = processor.tokenizer
    ends = {tok.convert_tokens_to_ids(processor.vision_eos_token), tok.convert_tokens_to_ids(processor.audio_eos_token)}
    prefix_len = max((i + 1 for i, t in enumerate(ids) if t in ends), default=0) if refs else 0
    media_key = "".join(f"{ref.kind}:{ref.sha256};" for ref in refs)

    def key(tokens: list[int]) -> str:
        return hashlib.sha256(f"{tokens!r}|{media_key}".encode()).hexdigest()

    return Prompt(ids, images, audios, prefix_len, key(ids[:prefix_len]), key(ids[:-1]), cached)


def stock_inputs(prompts: list[Prompt], pad_id: int) -> dict[str, Any]:
    """Left-padded model inputs of several prompts, media included: what the processor would give."""
    import torch

    width = max(len(p.ids) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p.ids) :] = torch.tensor(p.ids)
        mask[row, width - len(p.ids) :] = 1
    inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    inputs.update(media_inputs([im for p in prompts for im in p.images], [a for p in prompts for a in p.audios]))
    return inputs


def media_inputs(images: list[EncodedImage], audios: list[EncodedAudio]) -> dict[str, Any]:
    """pixel_values / image_grid_thw and input_features / feature_attention_mask of these items."""
    import torch

    out: dict[str, Any] = {}
    if images:
        out["pixel_values"] = torch.cat([im.pixel_values for im in images])
        out["image_grid_thw"] = torch.stack([im.grid_thw for im in images])
    if audios:
        frames = max(a.n_frames for a in audios)
        feats = torch.zeros((len(audios), audios[0].features.shape[0], frames), dtype=audios[0].features.dtype)
        fmask = torch.zeros((len(audios), frames), dtype=torch.long)
        for i, a in enumerate(audios):
            feats[i, :, : a.n_frames] = a.features
            fmask[i, : a.n_frames] = 1
        out["input_features"] = feats
        out["feature_attention_mask"] = fmask
    return out


def processor_mismatch(processor: Any, prompt: Prompt, conversation: list[dict]) -> str | None:
    """Why `prompt` differs from what the processor makes of the decoded conversation (None: it does not).

    Run once per checkpoint on its first prompt with media: a processor configured in a way this
    module does not reproduce is caught before any answer depends on it.
    """
    import torch

    stock = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    if stock["input_ids"][0].tolist() != prompt.ids:
        return "token ids differ"
    mine = media_inputs(prompt.images, prompt.audios)
    if "pixel_values" in mine:
        if not torch.equal(stock["image_grid_thw"], mine["image_grid_thw"]):
            return "image grids differ"
        if not torch.allclose(stock["pixel_values"].float(), mine["pixel_values"].float(), atol=1e-5):
            return "pixel values differ"
    if "input_features" in mine:
        frames = stock["feature_attention_mask"].sum(-1).tolist()
        if frames != [a.n_frames for a in prompt.audios]:
            return "audio frame counts differ"
        for i, n in enumerate(frames):
            if not torch.allclose(
                stock["input_features"][i, :, :n].float(), mine["input_features"][i, :, :n], atol=1e-5
            ):
                return "audio features differ"
    return None
