"""Write the annotated video: every frame with its boxes and sounds, and the original soundtrack.

One pass over the video with PyAV: frames are decoded in display order (rotation applied), boxes
come from the analysed frames and, between them, from `Follower`; the frames are encoded as H.264
with their original timestamps and the audio is re-encoded as AAC (mp4 cannot carry every codec a
source video may use), so frame count, timing and sound match the input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from gar_agent.overlay import draw_boxes, source_label
from gar_agent.video.decode import VideoError, VideoInfo, display, open_video
from gar_agent.video.follow import Anchor, Follower

_TAGS = {"analysis": "", "tracker": "", "interpolation": " ~", "held": " ?"}


def anchors_by_frame(entries: list[dict]) -> dict[float, Anchor]:
    """Analysed (or reused) times with boxes, keyed by the start time of their frame."""
    out: dict[float, Anchor] = {}
    for e in sorted(entries, key=lambda e: e["t"]):
        if e["status"] in ("analysed", "reused") and e["sources"]:
            items = [
                {"source": s["index"], "audio_class": s["audio_class"], "box": list(s["box"])}
                for s in e["sources"]
                if s.get("box")
            ]
            out[round(e["frame_time_s"], 6)] = Anchor(e["frame_time_s"], items)
    return out


def _items(boxes: list[dict]) -> list[dict]:
    return [{"box": b["box"], "label": source_label(b["source"], b["audio_class"]) + _TAGS[b["origin"]]} for b in boxes]


def _even(rgb: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: repeat the last row/column when a side is odd."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return rgb


def render(
    info: VideoInfo,
    entries: list[dict],
    target: Path,
    on_frame: Callable[[int], None] | None = None,
    tracker: str = "template",
) -> tuple[list[dict], str | None]:
    """Write the annotated video to `target` (atomically); return the per-frame boxes and any decoding error."""
    anchors = anchors_by_frame(entries)
    times = sorted(anchors)
    follower = Follower(info.width, info.height, tracker)
    frames: list[dict] = []
    error = None
    tmp = target.with_name(f".tmp-{target.name}")
    with open_video(info.path) as inp:
        vs, ins = inp.streams.video[0], inp.streams.audio[0]
        time_base = vs.time_base or Fraction(1, 90000)  # a demuxed stream has one; 90 kHz is MPEG's clock
        out = av.open(str(tmp), "w", format="mp4")
        try:
            ov = out.add_stream("libx264", rate=vs.average_rate or vs.guessed_rate or 25)
            ov.width, ov.height = info.width + info.width % 2, info.height + info.height % 2
            ov.pix_fmt = "yuv420p"
            ov.time_base = vs.time_base
            ov.options = {"preset": "veryfast", "crf": "20"}
            oa = out.add_stream("aac", rate=ins.rate)
            oa.layout = ins.layout.name
            following = 0
            try:
                for packet in inp.demux(vs, ins):
                    for frame in packet.decode():
                        if isinstance(frame, av.AudioFrame):
                            frame.pts = None  # the encoder counts samples itself
                            out.mux(oa.encode(frame))
                            continue
                        if not isinstance(frame, av.VideoFrame):  # a subtitle: only video and audio are demuxed
                            continue
                        t = round(float(frame.time or 0.0), 6)
                        rgb = display(frame.to_ndarray(format="rgb24"), info.rotation)
                        while following < len(times) and times[following] <= t:
                            following += 1
                        if t in anchors:
                            nxt = anchors[times[following]] if following < len(times) else None
                            boxes = follower.anchor(rgb, anchors[t], nxt)
                        else:
                            boxes = follower.step(rgb, t)
                        drawn = av.VideoFrame.from_ndarray(_even(draw_boxes(rgb, _items(boxes))), format="rgb24")
                        drawn.time_base = vs.time_base
                        drawn.pts = frame.pts if frame.pts is not None else round(t / time_base)
                        out.mux(ov.encode(drawn))
                        frames.append({"index": len(frames), "time_s": t, "boxes": boxes})
                        if on_frame:
                            on_frame(len(frames))
            except av.error.FFmpegError as e:  # a damaged tail: keep what decoded, say so in the timeline
                error = f"decoding stopped after {len(frames)} frames: {' '.join(str(e).split())[:120]}"
            out.mux(ov.encode())
            out.mux(oa.encode())
        except BaseException:  # Ctrl-C or a failure: no half-written video is left behind
            out.close()
            tmp.unlink(missing_ok=True)
            raise
        out.close()
    if not frames:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"video {info.path} has no decodable frame: the file is damaged or truncated")
    os.replace(tmp, target)
    return frames, error
