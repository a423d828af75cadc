"""Encode each clip's media once: the processor's image and audio outputs, cached by content hash.

Every model call of a clip sends the same image and audio. Running the processor on them again for
each call (resize + patchify the image, log-mel the audio) is pure waste, so the outputs are kept in
a small LRU keyed by the sha256 of the media bytes (the hash `gar_agent.media.Media.hashes` records
in traces). The key is the content, never a path: an image edited in place is a different key.

Audio features are computed on the clip's own length, not padded to Whisper's 300 s window as the
stock processor does. The model drops padded frames before its audio encoder (it selects frames by
`feature_attention_mask`), and every frame that holds real samples is computed from the same samples
either way (the clip is padded with enough zeros that no STFT window reaches the reflection at the
end), so the model sees the same features: `tests/test_qwen_omni_cache.py` checks features, logits
and greedy answers against the stock processor. 3 s of audio: 300 frames instead of 30000 (15 MB).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

MediaKind = Literal["image", "audio"]


@dataclass(frozen=True)
class MediaRef:
    """One image or audio item of a prompt: its bytes and their sha256 (the cache key)."""

    kind: MediaKind
    data: bytes = field(repr=False)
    sha256: str

    @classmethod
    def of(cls, kind: MediaKind, data: bytes) -> MediaRef:
        """A reference to these bytes (hashed once here)."""
        return cls(kind, data, hashlib.sha256(data).hexdigest())


@dataclass
class EncodedImage:
    """The image processor's output for one image."""

    pixel_values: Any  # torch [patches, C*T*P*P], float32
    grid_thw: Any  # torch [3] (t, h, w) in patches
    n_tokens: int  # length of the <|IMAGE|> run in the prompt

    @property
    def nbytes(self) -> int:
        """Memory held by this entry."""
        return int(self.pixel_values.numel() * self.pixel_values.element_size())


@dataclass
class EncodedAudio:
    """The feature extractor's output for one clip, trimmed to the clip's frames."""

    features: Any  # torch [mel bins, frames], float32
    n_tokens: int  # length of the <|AUDIO|> run in the prompt

    @property
    def n_frames(self) -> int:
        """Feature frames of the clip (what the processor's attention mask counts)."""
        return int(self.features.shape[-1])

    @property
    def nbytes(self) -> int:
        """Memory held by this entry."""
        return int(self.features.numel() * self.features.element_size())


def audio_tokens(n_frames: int) -> int:
    """Audio tokens the model makes of `n_frames` feature frames (two stride-2 stages)."""
    after_conv = (n_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def encode_image(processor: Any, data: bytes) -> EncodedImage:
    """Decode and run the checkpoint's image processor on one image."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    ip = processor.image_processor
    out = ip(images=[rgb], return_tensors="pt")
    grid = out["image_grid_thw"][0]
    return EncodedImage(out["pixel_values"], grid, int(grid.prod()) // ip.merge_size**2)


def audio_features(feature_extractor: Any, wave: Any) -> Any:
    """Log-mel features of a 16 kHz clip over its own length: torch [mel bins, frames]."""
    fe = feature_extractor
    wave = wave[: fe.n_samples]  # the stock processor truncates at its window (300 s) too
    # zeros past the end as the 300 s padding has them: n_fft more samples keep every real frame's
    # window (and the reflection at the very end) off the clip, so each frame equals the padded one
    padded = math.ceil((len(wave) + fe.n_fft) / fe.hop_length) * fe.hop_length
    out = fe(
        wave,
        sampling_rate=fe.sampling_rate,
        padding="max_length",
        max_length=padded,
        return_attention_mask=True,
        return_tensors="pt",
    )
    frames = int(out["attention_mask"][0].sum())
    return out["input_features"][0, :, :frames].contiguous()


def encode_audio(processor: Any, data: bytes) -> EncodedAudio:
    """Decode (16 kHz mono) and extract the clip's features at its own length."""
    from gar_agent.media import decode_audio

    features = audio_features(processor.feature_extractor, decode_audio(data))
    return EncodedAudio(features, audio_tokens(int(features.shape[-1])))


K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """A thread-safe least-recently-used map with at most `max_items` entries, and hit/miss counts."""

    def __init__(self, max_items: int):
        if max_items < 0:
            raise ValueError(f"cache size must be >= 0, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        """The entry (now most recent), or None; counts a hit or a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key: K, value: V) -> None:
        """Store an entry, evicting the least recently used beyond `max_items`."""
        if self.max_items == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get_or_make(self, key: K, make: Callable[[], V]) -> tuple[V, bool]:
        """(entry, was cached): a miss makes and stores it (outside the lock: encoding is slow)."""
        found = self.get(key)
        if found is not None:
            return found, True
        value = make()
        self.put(key, value)
        return value, False

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def values(self) -> list[V]:
        """The entries, least recent first."""
        with self._lock:
            return list(self._items.values())

    def clear(self) -> None:
        """Drop every entry (counts stay)."""
        with self._lock:
            self._items.clear()


class MediaCache:
    """Processor outputs of recent media, keyed by (kind, sha256); a few clips' worth."""

    def __init__(self, processor: Any, max_items: int = 8):
        self.processor = processor
        self.entries: LRUCache[tuple[str, str], EncodedImage | EncodedAudio] = LRUCache(max_items)
        self.encode_s = 0.0  # time spent encoding (misses), for benchmarks

    def encode(self, ref: MediaRef) -> tuple[EncodedImage | EncodedAudio, bool]:
        """The encoded item and whether it came from the cache."""
        import time

        def make() -> EncodedImage | EncodedAudio:
            t0 = time.perf_counter()
            enc = (encode_image if ref.kind == "image" else encode_audio)(self.processor, ref.data)
            self.encode_s += time.perf_counter() - t0
            return enc

        return self.entries.get_or_make((ref.kind, ref.sha256), make)

    @property
    def nbytes(self) -> int:
        """Memory held by the cached entries."""
        return sum(e.nbytes for e in self.entries.values())
