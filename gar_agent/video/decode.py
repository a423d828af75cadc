"""Read a video with PyAV (FFmpeg in the wheel): its facts, the frame at a time, an audio window.

Frames come out as the viewer sees them: the display matrix (a phone's "rotate" tag) is applied.
Every problem (no file, not a video, no video or audio stream, a truncated file, a time outside
the video) is a `VideoError` with a one-line message saying what, where, and what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from gar_agent.hashing import file_sha256
from gar_agent.media import SAMPLE_RATE, SILENCE, MediaError, check_pixels

VIDEO_TYPES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
_ERRORS = (av.error.FFmpegError, OSError, ValueError)


class VideoError(MediaError):
    """A video that cannot be used (or a time it does not contain); the message is one line."""


@dataclass
class VideoInfo:
    """What a video is: display size (after rotation), rate, length, and its audio track."""

    path: str
    sha256: str
    size: int
    width: int
    height: int
    fps: float
    duration_s: float
    rotation: int  # degrees counter-clockwise applied to decoded frames for display
    audio_rate: int | None
    audio_channels: int | None

    def as_dict(self) -> dict:
        """JSON-ready copy."""
        return asdict(self)


def is_video(path: str | Path) -> bool:
    """Whether a path names a video by its extension."""
    return Path(path).suffix.lower() in VIDEO_TYPES


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split())[:120] or type(e).__name__


@contextmanager
def open_video(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open a video file, with one-line errors for a missing, empty or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video file {path} does not exist: check the path")
    if path.is_dir():
        raise VideoError(f"video path {path} is a directory: give a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"video file {path} is empty: give a real video file")
    try:
        container = av.open(str(path))
    except _ERRORS as e:
        raise VideoError(
            f"video file {path} could not be opened ({_reason(e)}): give a readable mp4, mkv, webm, mov or avi file"
        ) from None
    try:
        yield container
    finally:
        container.close()


def display(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned as the display matrix says (counter-clockwise degrees)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def probe(path: str | Path, need_audio: bool = True) -> VideoInfo:
    """The video's facts; fails when it has no video stream, no decodable frame or (if needed) no audio."""
    path = Path(path)
    with open_video(path) as c:
        if not c.streams.video:
            raise VideoError(f"{path} has no video stream: give a video file (for sound alone use gar run IMAGE AUDIO)")
        vs = c.streams.video[0]
        audio = c.streams.audio[0] if c.streams.audio else None
        if need_audio and audio is None:
            raise VideoError(f"video {path} has no audio track: give a video with sound (or gar run IMAGE AUDIO)")
        # the size the stream declares, checked before a frame is decoded (as an image's header is)
        check_pixels(vs.codec_context.width or 0, vs.codec_context.height or 0, str(path), "video", VideoError)
        first = _first_frame(c, path)
        check_pixels(first.width, first.height, str(path), "video", VideoError)
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        duration = _stream_end(c, vs, _duration(c, vs), 1 / fps if fps else 0.0, path)
        if duration <= 0:
            raise VideoError(f"video {path} reports no duration: re-mux it (e.g. save it again as mp4)")
        rotation = int(first.rotation or 0)
        w, h = first.width, first.height
        if round(rotation / 90) % 2:
            w, h = h, w
        return VideoInfo(
            path=str(path),
            sha256=file_sha256(path),
            size=path.stat().st_size,
            width=w,
            height=h,
            fps=round(fps, 6),
            duration_s=round(duration, 6),
            rotation=rotation,
            audio_rate=audio.rate if audio else None,
            audio_channels=audio.channels if audio else None,
        )


def _first_frame(c, path: Path) -> av.VideoFrame:
    try:
        for frame in c.decode(video=0):
            return frame
    except _ERRORS as e:
        raise VideoError(
            f"video {path} could not be decoded ({_reason(e)}): the file is damaged or truncated"
        ) from None
    raise VideoError(f"video {path} has no decodable frame: the file is damaged or truncated")


def _duration(c, vs) -> float:
    if vs.duration and vs.time_base:
        return float(vs.duration * vs.time_base)
    if c.duration:
        return c.duration / 1_000_000
    return 0.0


def _stream_end(c, vs, claimed: float, frame_s: float, path: Path) -> float:
    """Where the video stream really ends: the end of its last packet, not what the header claims.

    A header can claim anything (a 3-frame file said 100,000 s, and `gar track` planned 50,000
    times). Packets carry the stream's own timestamps; reading them (no decoding) from a keyframe
    shortly before the claimed end costs little, and from the start only when that finds nothing.
    """
    if not vs.time_base:
        return claimed
    end = None
    for start in ([max(0.0, claimed - 1.0)] if claimed > 0 else []) + [0.0]:
        try:
            c.seek(int(start / vs.time_base), stream=vs, backward=True, any_frame=False)
            for packet in c.demux(vs):
                if packet.pts is not None:  # a packet without a duration shows its frame for one frame time
                    shown = float(packet.duration * vs.time_base) if packet.duration else frame_s
                    stop = float(packet.pts * vs.time_base) + shown
                    end = stop if end is None else max(end, stop)
        except _ERRORS as e:
            raise VideoError(
                f"video {path} could not be read to its end ({_reason(e)}): the file is damaged or truncated"
            ) from None
        if end is not None:
            return end
    return claimed


def check_time(info: VideoInfo, at: float, flag: str = "--at") -> None:
    """A time must lie in the video."""
    if not 0 <= at <= info.duration_s:
        raise VideoError(
            f"{flag} {at:g} s is outside video {info.path} (0 to {info.duration_s:.3f} s): give a time in that range"
        )


def frame_at(info: VideoInfo, at: float) -> tuple[np.ndarray, float]:
    """The frame shown at time `at` (the last one starting at or before it), as RGB, and its time."""
    check_time(info, at)
    path = Path(info.path)
    with open_video(path) as c:
        vs = c.streams.video[0]
        best: tuple[av.VideoFrame, float] | None = None
        try:
            if at > 0 and vs.time_base:
                c.seek(int(at / vs.time_base), stream=vs, backward=True)
            for frame in c.decode(vs):
                t = float(frame.time or 0.0)
                if best is not None and t > at + 1e-9:
                    break
                best = (frame, t)  # converted to RGB once, when found
            if best is None:
                raise VideoError(f"video {path} has no frame at {at:g} s: the file is damaged or truncated")
            return display(best[0].to_ndarray(format="rgb24"), info.rotation), best[1]
        except _ERRORS as e:
            raise VideoError(
                f"video {path} could not be decoded near {at:g} s ({_reason(e)}): the file is damaged or truncated"
            ) from None


def audio_span(info: VideoInfo, at: float, window: float) -> tuple[float, float]:
    """The window of `window` seconds centred on `at`, shifted (not cut) to lie inside the video."""
    length = min(window, info.duration_s)
    start = min(max(at - length / 2, 0.0), info.duration_s - length)
    return round(start, 6), round(start + length, 6)


def audio_window(info: VideoInfo, start: float, end: float) -> np.ndarray:
    """The soundtrack between two times as 16 kHz mono float32."""
    path = Path(info.path)
    chunks: list[np.ndarray] = []
    first_t: float | None = None
    rate = info.audio_rate or SAMPLE_RATE
    with open_video(path) as c:
        if not c.streams.audio:
            raise VideoError(f"video {path} has no audio track: give a video with sound (or gar run IMAGE AUDIO)")
        stream = c.streams.audio[0]
        to_mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        try:
            if start > 0 and stream.time_base:
                c.seek(int(start / stream.time_base), stream=stream, backward=True)
            have = 0
            for frame in c.decode(stream):
                if first_t is None:
                    first_t = float(frame.time or 0.0)
                for out in to_mono.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    have += chunk.size
                if first_t + have / rate >= end:
                    break
        except _ERRORS as e:
            raise VideoError(
                f"the audio of video {path} could not be decoded near {start:g} s ({_reason(e)}): "
                "the file is damaged or truncated"
            ) from None
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    lo = max(0, round((start - (first_t or 0.0)) * rate))
    wave = wave[lo : lo + round((end - start) * rate)]
    if wave.size < 0.5 * (end - start) * rate:
        raise VideoError(
            f"the audio of video {path} stops before {end:g} s: the file is truncated; choose an earlier time"
        )
    if rate != SAMPLE_RATE:
        import soxr

        wave = soxr.resample(wave, rate, SAMPLE_RATE)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if not wave.size or float(np.max(np.abs(wave))) < SILENCE:
        raise VideoError(f"the audio of video {path} is silent from {start:g} to {end:g} s: choose another time")
    return wave
