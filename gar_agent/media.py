"""Load and check the inputs: one image (jpg/png/webp) and one audio clip (to 16 kHz mono).

Every problem becomes a `MediaError` whose message says what is wrong, where, and what to do, so
the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from gar_agent.errors import UserError
from gar_agent.state import AudioInfo, ImageInfo

SAMPLE_RATE = 16_000
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
AUDIO_TYPES = (".wav", ".flac", ".mp3", ".ogg")
SILENCE = 1e-4  # peak amplitude under which a clip carries no usable sound


class MediaError(UserError):
    """An input file that cannot be used; the message is one line."""


@dataclass
class Media:
    """The decoded inputs and the exact bytes the model is shown."""

    image: np.ndarray  # RGB, HxWx3 uint8
    image_bytes: bytes
    image_mime: str
    audio: np.ndarray  # float32 mono at SAMPLE_RATE
    audio_bytes: bytes  # 16-bit PCM WAV of `audio`
    image_info: ImageInfo
    audio_info: AudioInfo
    notices: list[str] = field(default_factory=list)

    @cached_property
    def _image_b64(self) -> str:
        return base64.b64encode(self.image_bytes).decode()

    @cached_property
    def _audio_b64(self) -> str:
        return base64.b64encode(self.audio_bytes).decode()

    def image_block(self) -> dict:
        """The image as a LangChain standard content block (encoded once, sent by every call)."""
        return {"type": "image", "base64": self._image_b64, "mime_type": self.image_mime}

    def audio_block(self) -> dict:
        """The audio as a LangChain standard content block (encoded once, sent by every call)."""
        return {"type": "audio", "base64": self._audio_b64, "mime_type": "audio/wav"}

    @cached_property
    def hashes(self) -> dict[str, str]:
        """sha256 of what the model was shown, by kind: how a trace refers to media."""
        return {
            "image": hashlib.sha256(self.image_bytes).hexdigest(),
            "audio": hashlib.sha256(self.audio_bytes).hexdigest(),
        }


def _readable(path: Path, kind: str) -> bytes:
    if not path.exists():
        raise MediaError(f"{kind} file {path} does not exist: check the path")
    if path.is_dir():
        raise MediaError(f"{kind} path {path} is a directory: give a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MediaError(f"{kind} file {path} cannot be read ({e.strerror}): check its permissions") from None
    if not data:
        raise MediaError(f"{kind} file {path} is empty: give a real {kind} file")
    return data


def _orientation(data: bytes) -> int | None:
    """The EXIF orientation tag (1 = upright), or None when the file has none or is not readable by PIL."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.getexif().get(0x0112)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def load_image(path: str | Path) -> tuple[np.ndarray, bytes, str, ImageInfo]:
    """Decode an image to RGB (alpha dropped); JPEGs are passed to the model byte for byte."""
    path = Path(path)
    data = _readable(path, "image")
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if array is None or array.size == 0:
        raise MediaError(f"image file {path} could not be decoded: give a valid jpg, png or webp image")
    rgb = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    if w < 2 or h < 2:
        raise MediaError(f"image file {path} is {w}x{h} pixels: give an image at least 2x2")
    if _orientation(data) not in (None, 1):
        # cv2 applied the EXIF rotation to the pixels; the model must see that frame too, not the raw
        # bytes (which decoders without EXIF support show unrotated): send the rotated pixels.
        ok, png = cv2.imencode(".png", array)
        shown, mime = png.tobytes(), "image/png"
    elif data[:3] == b"\xff\xd8\xff":
        shown, mime = data, "image/jpeg"
    else:  # re-encode losslessly without alpha so every backend gets plain RGB
        ok, png = cv2.imencode(".png", array)
        shown, mime = png.tobytes(), "image/png"
    info = ImageInfo(path=str(path), width=w, height=h, sha256=hashlib.sha256(data).hexdigest())
    return rgb, shown, mime, info


def decode_audio(src: bytes | str | Path) -> np.ndarray:
    """16 kHz mono float32 from a file or its bytes (any rate, any channel count)."""
    source = io.BytesIO(src) if isinstance(src, bytes) else str(src)
    try:
        # soundfile + soxr is what librosa.load does, without librosa's seconds of numba start-up
        wave, rate = sf.read(source, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        if rate != SAMPLE_RATE:
            import soxr

            wave = soxr.resample(wave, rate, SAMPLE_RATE)
    except sf.LibsndfileError:
        import librosa  # formats libsndfile cannot read (audioread fallback)

        if isinstance(source, io.BytesIO):
            source.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, _ = librosa.load(source, sr=SAMPLE_RATE, mono=True)
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_audio(path: str | Path, max_seconds: float = 30.0) -> tuple[np.ndarray, bytes, AudioInfo, list[str]]:
    """Decode audio to 16 kHz mono; longer than `max_seconds` keeps a centred window (with a notice)."""
    path = Path(path)
    data = _readable(path, "audio")
    try:
        audio = decode_audio(data)
    except Exception as e:  # decoders raise many types; all mean the same to the user
        # decoders name the in-memory buffer ("<_io.BytesIO object at 0x...>"): say the file instead
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", path.name, " ".join(str(e).split()))
        reason = reason[:120] or type(e).__name__
        raise MediaError(
            f"audio file {path} could not be decoded ({reason}): give a wav, flac, mp3 or ogg file"
        ) from None
    if audio.size == 0:
        raise MediaError(f"audio file {path} has no samples: give a clip with sound")
    if not np.isfinite(audio).all():
        raise MediaError(f"audio file {path} contains NaN or infinite samples: re-export it")
    if float(np.max(np.abs(audio))) < SILENCE:
        raise MediaError(f"audio file {path} is silent: give a clip in which something makes a sound")
    original = audio.size / SAMPLE_RATE
    notices, window = [], None
    if max_seconds and original > max_seconds:
        keep = int(max_seconds * SAMPLE_RATE)
        start = (audio.size - keep) // 2
        audio = audio[start : start + keep]
        window = (round(start / SAMPLE_RATE, 3), round((start + keep) / SAMPLE_RATE, 3))
        notices.append(
            f"audio {path} is {original:.1f} s long: using the centred {max_seconds:g} s window "
            f"{window[0]:.2f}-{window[1]:.2f} s (change with --max-audio-s)"
        )
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    info = AudioInfo(
        path=str(path),
        sample_rate=SAMPLE_RATE,
        duration_s=round(audio.size / SAMPLE_RATE, 3),
        original_duration_s=round(original, 3),
        window_s=window,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return audio.astype(np.float32), buf.getvalue(), info, notices


def load_media(image: str | Path, audio: str | Path, max_audio_s: float = 30.0) -> Media:
    """Load and check both inputs of a run."""
    rgb, shown, mime, image_info = load_image(image)
    wave, wav_bytes, audio_info, notices = load_audio(audio, max_audio_s)
    return Media(rgb, shown, mime, wave, wav_bytes, image_info, audio_info, notices)
