"""`gar track`: localize at regular times through a video, follow the boxes between them, write it all.

The folder (`--out`)::

    track.json              settings of the folder (video hash, times, graph, model): checked on resume
    times/<run id>.json     one per analysed time, written atomically when its run is done
    traces/<run id>/        the trace of each analysed time (run id: t<seconds>, e.g. t0012.500)
    media/                  the frame and audio window each time was given
    <video>.tracked.mp4     the annotated video with the original audio
    timeline.json           per time: sources, boxes, classes, gate decisions; per frame: drawn boxes

Times already in `times/` are not run again (failed ones are), so an interrupted command continues;
the video and the timeline are written again from all times at the end (one cheap pass).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gar_agent.trace.store import atomic_write
from gar_agent.video.analyse import Analyser
from gar_agent.video.decode import VideoError
from gar_agent.video.render import render


def analysis_times(duration_s: float, every_s: float) -> list[float]:
    """0, every, 2*every, ... strictly inside the video (a video shorter than `every` gets time 0)."""
    n = max(1, math.ceil(duration_s / every_s - 1e-9))
    return [round(k * every_s, 6) for k in range(n)]


def run_id(t: float) -> str:
    """The run id (and file name) of an analysed time."""
    return f"t{t:08.3f}"


@dataclass
class TrackFolder:
    """Where `gar track` writes."""

    root: Path
    video_name: str

    @property
    def config(self) -> Path:
        return self.root / "track.json"

    @property
    def times(self) -> Path:
        return self.root / "times"

    @property
    def traces(self) -> Path:
        return self.root / "traces"

    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def timeline(self) -> Path:
        return self.root / "timeline.json"

    @property
    def video(self) -> Path:
        return self.root / f"{Path(self.video_name).stem}.tracked.mp4"

    def entry(self, t: float) -> Path:
        return self.times / f"{run_id(t)}.json"


def track_config(analyser: Analyser, every: float, tracker: str) -> dict:
    """The settings that make a folder's times comparable; a resumed run must match them."""
    a = analyser
    return {
        "video": {"path": a.info.path, "sha256": a.info.sha256},
        "every_s": every,
        "window_s": a.window,
        "reuse": a.reuse,
        "tracker": tracker,
        "settings": a.settings.model_dump(mode="json"),
        "graph_sha256": a.topology.sha256,
        "prompts": a.prompts.hashes(),
    }


def prepare(folder: TrackFolder, config: dict) -> None:
    """Create the folder, or check that an existing one was made with the same settings."""
    if folder.config.is_file():
        try:
            old = json.loads(folder.config.read_text())
        except json.JSONDecodeError:
            old = None
        if isinstance(old, dict):
            old["video"]["path"] = config["video"]["path"]  # the video may have moved; its hash must match
            differs = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            if differs:
                raise VideoError(
                    f"{folder.root} holds a track made with other {', '.join(differs)}: "
                    "run the same settings to continue it, or give another --out"
                )
            return
    folder.root.mkdir(parents=True, exist_ok=True)
    atomic_write(folder.config, json.dumps(config, indent=2) + "\n")


def read_entry(path: Path) -> dict | None:
    """A stored time, or None when it is missing or unreadable (then it is run again)."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return entry if isinstance(entry, dict) and "status" in entry else None


def track(
    analyser: Analyser,
    folder: TrackFolder,
    every: float,
    tracker: str = "template",
    on_time: Callable[[int, int, dict], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> dict:
    """Analyse every time not yet on disk, then write the annotated video and the timeline; return it."""
    config = track_config(analyser, every, tracker)
    prepare(folder, config)
    folder.times.mkdir(exist_ok=True)
    times = analysis_times(analyser.info.duration_s, every)
    entries, previous, resumed = [], None, 0
    for i, t in enumerate(times):
        entry = read_entry(folder.entry(t))
        if entry is None or entry["status"] == "failed":  # a failure may be passing (a model error): try again
            entry = analyser.analyse(t, run_id(t), previous)
            atomic_write(folder.entry(t), json.dumps(entry, indent=1) + "\n")
        else:
            resumed += 1
        entries.append(entry)
        if entry["status"] in ("analysed", "reused"):
            previous = entry
        if on_time:
            on_time(i + 1, len(times), entry)
    frames, decode_error = render(analyser.info, entries, folder.video, on_frame, tracker)
    origins = Counter(b["origin"] for f in frames for b in f["boxes"])
    timeline = {
        "video": analyser.info.as_dict(),
        "annotated_video": str(folder.video),
        "settings": config,
        "times": entries,
        "frames": frames,
        "summary": {
            "times": len(times),
            "analysed": sum(e["status"] == "analysed" for e in entries),
            "reused": sum(e["status"] == "reused" for e in entries),
            "failed": sum(e["status"] == "failed" for e in entries),
            "resumed": resumed,
            "frames": len(frames),
            "boxes_by_origin": dict(sorted(origins.items())),
            "decode_error": decode_error,
        },
    }
    atomic_write(folder.timeline, json.dumps(timeline, indent=1) + "\n")
    return timeline
