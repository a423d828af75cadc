"""A tiny random-weight Qwen2.5-Omni thinker checkpoint.

The real weights live on the Hugging Face hub, which tests and CI cannot reach; this checkpoint has
the same architecture, files and processor, so the real loading and generation code runs on it.
Its answers are noise.
"""

from __future__ import annotations

import json
from pathlib import Path

# Qwen's special tokens, in Qwen's order (ids follow the trained vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|vision_pad|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
]

# transformers does not ship Qwen2.5-Omni's template; this renders the same turn structure.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif item['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif item['type'] == 'video' %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "You are a helpful assistant. Find the object that makes the sound.",
    'Answer with JSON: {"bbox": [12, 34, 56, 78], "description": "a dog barking"}',
    '{"audio_class": "violin", "audio_confidence_score": 0.9}',
    '{"anchor_votes": [{"anchor": "bow_on_strings", "score": 0.8}], "role_tags": ["player"]}',
    '{"av_consistency": 0.7, "keep": true, "changed": false, "ops": null}',
    "The quick brown fox jumps over the lazy dog. 0123456789 system user assistant",
]


def _train_tokenizer(vocab_size: int = 400):
    """Byte-level BPE on a few sentences wrapped as a Qwen2 tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab = dict(state["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab,
        # the tokenizers library's BPE takes (left, right) pairs and no unknown token (a byte-level BPE
        # needs none); transformers' signature lists only the "left right" strings and a str token
        merges=merges,  # type: ignore[arg-type]
        unk_token=None,  # type: ignore[arg-type]
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        image_token="<|IMAGE|>",
        audio_token="<|AUDIO|>",
        video_token="<|VIDEO|>",
        vision_bos_token="<|vision_bos|>",
        vision_eos_token="<|vision_eos|>",
        audio_bos_token="<|audio_bos|>",
        audio_eos_token="<|audio_eos|>",
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return tok


def build_tiny_checkpoint(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-Omni thinker checkpoint (model, tokenizer, processor) to out_dir."""
    import torch
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = _train_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden = 64
    # The vision start/end, pad and eos ids are not fields of the thinker's config class, but its model
    # reads them from the config (a config keeps unknown keywords as attributes): hence the ignore.
    config = Qwen2_5OmniThinkerConfig(  # type: ignore[call-arg]
        audio_config={
            "num_mel_bins": 128,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "output_dim": hidden,
            "n_window": 50,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": hidden,
            "fullatt_block_indexes": [1],
        },
        text_config={
            "vocab_size": len(tok),
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            # mrope sections sum to head_dim / 2 = 8
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            "pad_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        audio_token_index=ids["<|AUDIO|>"],
        image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"],
        vision_end_token_id=ids["<|vision_eos|>"],
        user_token_id=tok.convert_tokens_to_ids("user") if "user" in tok.get_vocab() else 0,
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(seed)
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-file write needs no progress bar
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()

    processor = Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=3136,
            max_pixels=12845056,
            patch_size=14,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=[0.48145466, 0.4578275, 0.40821073],
            image_std=[0.26862954, 0.26130258, 0.27577711],
        ),
        video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(
            feature_size=128, hop_length=160, chunk_length=300, n_fft=400, return_attention_mask=True
        ),
        tokenizer=tok,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir
