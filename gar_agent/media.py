"""Load and check the inputs: one image (jpg/png/webp) and one audio clip (to 16 kHz mono).

Every problem becomes a `MediaError` whose message says what is wrong, where, and what to do, so
the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from gar_agent.errors import UserError
from gar_agent.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
from gar_agent.state import AudioInfo, ImageInfo

SAMPLE_RATE = 16_000
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
AUDIO_TYPES = (".wav", ".flac", ".mp3", ".ogg")
SILENCE = 1e-4  # peak amplitude under which a clip carries no usable sound
# Frames above this many pixels are refused before decoding: far above any real frame (an 8K frame
# is 33 MP), far below what a decompression bomb asks (a 1 MB PNG can declare 20000x20000, which
# OpenCV decodes into 1.2 GB before anything else looks). --max-pixels or GAR_MAX_PIXELS change it.
_max_pixels: int | None = None  # set for one command by `pixel_limit` (its --max-pixels)


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


def max_pixels() -> int:
    """The pixel limit of a frame: the command's --max-pixels, else GAR_MAX_PIXELS, else the default."""
    if _max_pixels is not None:
        return _max_pixels
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 4:
        raise MediaError(f"{MAX_PIXELS_ENV}={text!r} is not a pixel count: give a whole number such as 50000000")
    return int(text)


@contextlib.contextmanager
def pixel_limit(limit: int | None):
    """Within the block every frame is checked against `limit` (None: the default or GAR_MAX_PIXELS)."""
    global _max_pixels
    old, _max_pixels = _max_pixels, limit
    try:
        yield
    finally:
        _max_pixels = old


def check_pixels(width: int, height: int, where: str, what: str = "image file", error=None) -> None:
    """Refuse a frame larger than the limit, naming the file, its size and the limit (`error`, MediaError)."""
    limit = max_pixels()
    if width * height > limit:
        raise (error or MediaError)(
            f"{what} {where} is {width}x{height} pixels ({width * height / 1e6:.0f} MP), over the limit of "
            f"{limit:,} pixels: give a smaller frame, or raise the limit with --max-pixels or {MAX_PIXELS_ENV}"
        )


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an image file declares, read from its header without decoding (None: unknown).

    PNG, JPEG and WebP are read here (a few bytes each); other formats by PIL, which also reads only
    the header until asked for pixels.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError:  # past PIL's own cap (twice 89 MP): larger than we would take
        return (1 << 31, 1 << 31)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def _orientation(data: bytes) -> int | None:
    """The EXIF orientation tag (1 = upright), or None when the file has none or is not readable by PIL."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size was checked against our own limit already
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.getexif().get(0x0112)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def load_image(path: str | Path) -> tuple[np.ndarray, bytes, str, ImageInfo]:
    """Decode an image to RGB (alpha dropped); JPEGs are passed to the model byte for byte.

    The size the file declares is checked against the pixel limit before anything is decoded.
    """
    path = Path(path)
    data = _readable(path, "image")
    size = image_size(data)
    if size is not None:
        check_pixels(*size, str(path))
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. OpenCV's own pixel cap on a format we could not read the size of
        reason = " ".join(str(e).split())[-120:]
        raise MediaError(
            f"image file {path} could not be decoded ({reason}): give a valid jpg, png or webp image"
        ) from None
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
