"""Media made for the tests: short videos (a red square moving right 3 px a frame over a gradient, a
mono tone that changes from 440 Hz to 880 Hz half-way, encoded with PyAV), the scripted answers that
point at the square, and a decompression-bomb PNG written without holding its pixels."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import av
import numpy as np
from helpers import write_script

W, H, FPS, RATE = 160, 120, 10, 16000


SQ = 24  # side of the square


BOX0 = [10, 40, 10 + SQ, 40 + SQ]  # the square on frame 0


FLAT = (60, 120, 60)  # the plain background of `leaving`


def square(i: int) -> list[int]:
    """Where the square is on frame i."""
    x = 10 + 3 * i
    return [x, 40, x + SQ, 40 + SQ]


def draw(i: int, visible: bool = True) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 // W, yy * 255 // H, np.full_like(xx, 90)], -1).astype(np.uint8)
    if visible:
        x1, y1, x2, y2 = square(i)
        img[y1:y2, x1:x2] = (255, 0, 0)
    return img


def tone(t: np.ndarray, switch_s: float) -> np.ndarray:
    return (0.5 * np.where(t < switch_s, np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t))).astype(np.float32)


def leaving(i: int) -> np.ndarray:
    """Flat green background; a red square with a blue core moving as `square`, gone from frame 12 (1.2 s)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = FLAT
    if i < 12:
        x1, y1, x2, y2 = square(i)
        img[y1:y2, x1:x2] = (255, 0, 0)
        img[y1 + 6 : y2 - 6, x1 + 6 : x2 - 6] = (0, 0, 255)
    return img


def make_video(
    path: Path,
    seconds: float = 3.0,
    audio: bool = True,
    rotate: int | None = None,
    silent_until: float = 0.0,
    scene=draw,
) -> Path:
    """A test video: `scene(i)` (the moving square), and the tone switching at seconds/2 (silence before `silent_until`)."""
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264", rate=FPS)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.options = {"preset": "ultrafast", "crf": "10"}
    if rotate is not None:
        vs.set_display_rotation(rotate)
    if audio:
        a = c.add_stream("aac", rate=RATE)
        a.layout = "mono"
    for i in range(round(seconds * FPS)):
        frame = av.VideoFrame.from_ndarray(scene(i), format="rgb24")
        frame.pts = i
        c.mux(vs.encode(frame))
    c.mux(vs.encode())
    if audio:
        wave = tone(np.arange(round(seconds * RATE)) / RATE, seconds / 2)
        wave[: round(silent_until * RATE)] = 0.0
        for s in range(0, wave.size, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, s : s + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = RATE, s
            c.mux(a.encode(chunk))
        c.mux(a.encode())
    c.close()
    return path


def claim_duration(path: Path, seconds: float) -> Path:
    """Make a Matroska file's header claim `seconds` (segment duration and every DURATION tag); frames unchanged."""
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Segment Info Duration: a float64 in TimecodeScale units (ms)
    assert at > 0
    struct.pack_into(">d", data, at + 3, seconds * 1000)
    h, rest = divmod(seconds, 3600)
    stamp = f"{int(h):02d}:{int(rest // 60):02d}:{rest % 60:012.9f}".encode()
    path.write_bytes(re.sub(rb"\d\d:\d\d:\d\d\.\d{9}", lambda m: stamp, bytes(data)))
    return path


def script_for(tmp_path: Path, box=BOX0) -> Path:
    return write_script(
        tmp_path / "script.json",
        audio=['{"audio_class": "beep", "audio_confidence_score": 0.9}'],
        generate=[json.dumps({"bbox": box, "description": "a red square"})],
        analyze=[{"av_consistency": 0.8, "keep": True, "role_tags": [], "anchor_votes": []}],
        refine=['{"changed": false}'],
    )


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit greyscale PNG of zeros, written row by row (never `width * height` bytes in memory)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    squeeze = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path
