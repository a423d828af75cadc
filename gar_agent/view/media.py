"""A run's frame and audio: where they are, a thumbnail, and the waveform's peaks.

A trace refers to media by hash and records the input paths (`inputs`); `--embed-media` also copies
them beside the trace (`embedded_media`). The viewer serves a copy under the served folder, or the
recorded input file only while its sha256 still equals the recording and it is an image or audio
file: the page never names a path, so nothing else outside the folder can be reached this way.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from gar_agent.hashing import file_sha256
from gar_agent.media import decode_audio
from gar_agent.trace.schema import Trace
from gar_agent.view.safety import OutsideRoot, inside, relative_ref

KINDS = {
    "image": {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"},
    "audio": {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"},
}
PEAKS = 600  # waveform columns: enough for a page-wide plot, small to send


class _Cache:
    """A small thread-safe LRU (hashes, thumbnails and waveforms are recomputed only when a file changes)."""

    def __init__(self, size: int) -> None:
        self.size, self.lock = size, threading.Lock()
        self.items: OrderedDict[object, object] = OrderedDict()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_hashes, _thumbs, _waves = _Cache(20000), _Cache(4000), _Cache(64)


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def _cached_sha256(path: Path) -> str:
    key = _stat_key(path)
    found = _hashes.get(key)
    if found is None:
        found = _hashes.put(key, file_sha256(path))
    return found


def locate(trace: Trace, trace_file: Path, root: Path, kind: str) -> tuple[Path, str] | None:
    """(file, mime type) of a run's image or audio, or None when neither copy is usable."""
    info = trace.inputs.get(kind)
    if kind not in KINDS or info is None:
        return None
    candidates: list[Path] = []
    if kind in trace.embedded_media:
        try:  # the embedded copy must itself stay inside the served folder
            rel = relative_ref(root, trace_file.parent)
            candidates.append(inside(root, f"{'' if rel == '.' else rel + '/'}{trace.embedded_media[kind]}"))
        except (OutsideRoot, ValueError):
            pass
    candidates.append(Path(info.path))
    for p in candidates:
        mime = KINDS[kind].get(p.suffix.lower())
        try:
            if mime and p.is_file() and _cached_sha256(p) == info.sha256:
                return p, mime
        except OSError:
            continue
    return None


THUMB_MAX_PIXELS = 100_000_000  # a frame past this (a decompression bomb, or a 10k x 10k photo) gets no thumbnail
_NONE = object()  # a cached "no thumbnail", so an undecodable or huge frame is not tried again per request


def thumbnail(path: Path, height: int = 64) -> bytes | None:
    """A small JPEG of an image (None if it cannot be decoded or is over THUMB_MAX_PIXELS).

    The size is read from the header before any pixel is decoded, and a JPEG is decoded at a
    reduced scale (1/2 to 1/8, PIL's `draft`): a 48-megapixel frame costs what a 0.75 one does.
    """
    from PIL import Image, ImageOps

    try:
        key = (*_stat_key(path), height)
    except OSError:
        return None
    found = _thumbs.get(key)
    if found is not None:
        return None if found is _NONE else found
    data = None
    try:
        with Image.open(path) as im:
            w, h = im.size
            if 0 < w * h <= THUMB_MAX_PIXELS:
                im.draft("RGB", (max(1, w * height // h), height))  # JPEG only: decode at 1/2..1/8 scale
                small = ImageOps.exif_transpose(im).convert("RGB")  # upright, as the model saw it
                sw, sh = small.size
                small.thumbnail((max(1, round(sw * height / sh)), height), Image.Resampling.BILINEAR)
                buf = io.BytesIO()
                small.save(buf, "JPEG", quality=80)
                data = buf.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # PIL's ways to say "not an image"
        data = None
    _thumbs.put(key, _NONE if data is None else data)
    return data


def waveform(path: Path, columns: int = PEAKS) -> dict | None:
    """Min/max peaks per column of the 16 kHz mono audio, and its duration (None if undecodable)."""
    try:
        key = (*_stat_key(path), columns)
    except OSError:
        return None
    found = _waves.get(key)
    if found is not None:
        return found
    try:
        wave = decode_audio(path)
    except Exception:  # any decoder failure means no waveform, not a broken page
        return None
    n = len(wave)
    if n == 0:
        return None
    cols = min(columns, n)
    edges = np.linspace(0, n, cols + 1).astype(int)
    mins = [round(float(wave[a:b].min()), 4) for a, b in zip(edges[:-1], edges[1:])]
    maxs = [round(float(wave[a:b].max()), 4) for a, b in zip(edges[:-1], edges[1:])]
    return _waves.put(key, {"duration_s": n / 16000, "min": mins, "max": maxs})
