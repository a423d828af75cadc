"""Run the graph on one time of a video and write its trace: the unit of `gar track`.

With reuse on, the graph is first run up to Generate (its audio call and its box call). When the
sounds it names and the boxes it draws agree with the previous analysed time (same classes in the
same order, each box IoU >= `REUSE_IOU` with that time's Generate box), Analyze, Gate and Refine
are skipped: their verdict on the previous time is taken over, i.e. the previous final box moved
by how much Generate's box moved. Otherwise the same thread runs on from Generate, so nothing is
asked twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from gar_agent.prompts import PromptSet
from gar_agent.record import input_files
from gar_agent.run import STOP, RunOutcome, run_and_record
from gar_agent.spec import RunSpec
from gar_agent.state import RunState, Settings
from gar_agent.topology import Topology
from gar_agent.video.clip import cut_clip
from gar_agent.video.decode import VideoError, VideoInfo

REUSE_IOU = 0.5


@dataclass
class Analyser:
    """What every analysed time shares: the video, the model (loaded once), the graph and where to write."""

    info: VideoInfo
    settings: Settings
    model: BaseChatModel
    topology: Topology
    prompts: PromptSet
    window: float
    media_dir: Path
    trace_dir: Path
    reuse: bool = True
    spec: RunSpec | None = None  # the command's run spec, recorded by every time's trace
    stats: dict = field(default_factory=lambda: {"analysed": 0, "reused": 0, "failed": 0})

    def analyse(self, t: float, run_id: str, previous: dict | None) -> dict:
        """One time's entry for the timeline (sources, boxes, classes, gate decisions, trace path)."""
        entry: dict = {"t": t, "run_id": run_id, "status": "failed", "error": None, "sources": []}
        try:
            media, clip = cut_clip(self.info, t, self.window, self.media_dir, stem=f"{run_id}-")
        except VideoError as e:
            self.stats["failed"] += 1
            return {**entry, "error": str(e)}
        entry.update(frame_time_s=clip.frame_time_s, window_s=list(clip.window_s), notices=list(media.notices))
        inputs = {**input_files(media), "video": clip.input_file()}
        outcome, path, reused = self._run(media, run_id, previous if self.reuse else None, inputs)
        entry.update(trace=str(path), usage=outcome.result.usage.model_dump(), error=outcome.result.error)
        if reused is not None:
            entry.update(status="reused", reused_from=reused["from"], sources=reused["sources"])
            self.stats["reused"] += 1
        elif outcome.result.error:
            entry["sources"] = _sources(outcome.state)
            self.stats["failed"] += 1
        else:
            entry.update(status="analysed", sources=_sources(outcome.state))
            self.stats["analysed"] += 1
        return entry

    def _run(self, media, run_id: str, previous: dict | None, inputs) -> tuple[RunOutcome, Path, dict | None]:
        can_stop = previous is not None and previous.get("status") in ("analysed", "reused") and previous["sources"]
        carried: list[dict] = []

        def after_generate(state: RunState):
            # the same sounds, boxed where they were: keep the previous verdict, skip Analyze/Gate/Refine
            verdict = carry_over(state, previous)
            if verdict is None:
                return None
            carried.append(verdict)
            return STOP

        done = run_and_record(
            media,
            self.settings,
            self.model,
            topology=self.topology,
            prompts=self.prompts,
            trace_dir=self.trace_dir,
            thread_id=run_id,
            after_generate=after_generate if can_stop else None,
            inputs=inputs,
            spec=self.spec,
        )
        assert done.trace_path is not None  # a trace_dir was given, so the trace was written
        return done.outcome, done.trace_path, (carried[0] if carried else None)


def _sources(state: RunState) -> list[dict]:
    return [
        {
            "index": s.index,
            "audio_class": s.audio_class,
            "audio_confidence": s.audio_confidence,
            "description": s.description,
            "generate_box": s.initial_box,
            "box": s.box,
            "gate": s.gate.model_dump(mode="json") if s.gate else None,
            "refined": s.refinement is not None,
        }
        for s in state.sources
    ]


def iou(a: list[int], b: list[int]) -> float:
    """Intersection over union of two xyxy boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def carry_over(state: RunState, previous: dict | None) -> dict | None:
    """The previous time's verdict moved onto this time's Generate boxes, or None when they disagree."""
    if previous is None or state.error or state.image is None or len(state.sources) != len(previous["sources"]):
        return None
    w, h = state.image.width, state.image.height
    out = []
    for now, before in zip(state.sources, previous["sources"]):
        if now.audio_class.strip().lower() != before["audio_class"].strip().lower():
            return None
        if (
            not now.initial_box
            or not before.get("generate_box")
            or iou(now.initial_box, before["generate_box"]) < REUSE_IOU
        ):
            return None
        moved = [b + (n - g) for b, n, g in zip(before["box"], now.initial_box, before["generate_box"])]
        box = [min(max(moved[0], 0), w), min(max(moved[1], 0), h), min(max(moved[2], 0), w), min(max(moved[3], 0), h)]
        out.append(
            {
                **before,
                "index": now.index,
                "audio_confidence": now.audio_confidence,
                "description": now.description,
                "generate_box": now.initial_box,
                "box": box,
            }
        )
    return {"from": previous.get("reused_from", previous["t"]), "sources": out}
