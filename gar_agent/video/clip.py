"""One analysable clip from a video: the frame at a time and the audio window centred on it.

The frame (PNG, lossless) and the window (16 kHz mono WAV) are written as files and loaded with
`load_media`, exactly as an IMAGE AUDIO pair is: the graph, the trace and replay see no difference,
and the trace's `inputs.video` says which video, time and window they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from gar_agent.media import SAMPLE_RATE, Media, load_media
from gar_agent.trace.schema import InputFile
from gar_agent.video.decode import VideoError, VideoInfo, audio_span, audio_window, frame_at, is_video, probe

DEFAULT_WINDOW_S = 3.0  # the benchmarks' clip length


@dataclass
class VideoClip:
    """Where in the video a clip was cut, and the files it was written to."""

    info: VideoInfo
    at_s: float
    frame_time_s: float
    window_s: tuple[float, float]
    frame_path: Path
    audio_path: Path

    def input_file(self) -> InputFile:
        """The video as a trace input: file facts plus the time and window used."""
        i = self.info
        return InputFile(
            path=i.path,
            sha256=i.sha256,
            size=i.size,
            width=i.width,
            height=i.height,
            duration_s=i.duration_s,
            fps=i.fps,
            rotation=i.rotation,
            at_s=self.at_s,
            frame_time_s=self.frame_time_s,
            window_s=self.window_s,
        )


def cut_clip(info: VideoInfo, at: float, window: float, folder: Path, stem: str = "") -> tuple[Media, VideoClip]:
    """Write the frame at `at` and the audio window around it into `folder`, and load them as a run's media."""
    rgb, frame_time = frame_at(info, at)
    start, end = audio_span(info, at, window)
    wave = audio_window(info, start, end)
    folder.mkdir(parents=True, exist_ok=True)
    frame_path, audio_path = folder / f"{stem}frame.png", folder / f"{stem}audio.wav"
    cv2.imwrite(str(frame_path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    sf.write(str(audio_path), np.clip(wave, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    media = load_media(frame_path, audio_path, max_audio_s=0)
    if end - start < window - 1e-6:
        media.notices.append(f"video {info.path} is {info.duration_s:.2f} s long: the audio window is all of it")
    elif abs((start + end) / 2 - at) > 1e-6:
        media.notices.append(
            f"the {window:g} s audio window around {at:g} s would leave the video: using {start:.2f}-{end:.2f} s"
        )
    return media, VideoClip(info, at, round(frame_time, 6), (start, end), frame_path, audio_path)


def run_media(
    first: Path, second: Path | None, *, at: float | None, window: float | None, max_audio_s: float, out: Path
) -> tuple[Media, VideoClip | None]:
    """The media of `gar run`: IMAGE AUDIO as before, or a VIDEO alone (frame and window written to `out`)."""
    if second is not None:
        if is_video(first):
            raise VideoError(f"{first} is a video: give it alone (gar run VIDEO [--at S]), without an AUDIO file")
        if at is not None or window is not None:
            raise VideoError("--at and --window choose a time in a video: give gar run VIDEO, not IMAGE AUDIO")
        return load_media(first, second, max_audio_s), None
    if not is_video(first):
        raise VideoError("AUDIO is missing: give gar run IMAGE AUDIO, or a video (mp4, mkv, webm, mov, avi) alone")
    info = probe(first)
    media, clip = cut_clip(info, info.duration_s / 2 if at is None else at, window or DEFAULT_WINDOW_S, out)
    return media, clip
