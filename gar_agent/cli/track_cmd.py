"""`gar track VIDEO`: localize at regular times, follow the boxes, write an annotated video and a timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gar_agent.cli.common import (
    EXIT_RUN_FAILED,
    USER_ERRORS,
    Backend,
    GraphOpt,
    MaxPixelsOpt,
    ModelOpt,
    NVotesOpt,
    PromptsOpt,
    ProtocolOpt,
    TauAudio,
    TauAv,
    VotesPerCallOpt,
    check_votes,
    console,
    err,
    fail,
    with_pixel_limit,
)
from gar_agent.cli.safe_text import visible
from gar_agent.models.backends import resolve_backend
from gar_agent.prompts import PromptSet
from gar_agent.spec import build_spec
from gar_agent.state import Settings
from gar_agent.topology import load_topology
from gar_agent.video.analyse import Analyser
from gar_agent.video.clip import DEFAULT_WINDOW_S
from gar_agent.video.decode import probe
from gar_agent.video.follow import TRACKERS
from gar_agent.video.track import TrackFolder, track


@with_pixel_limit
def track_command(
    video: Annotated[Path, typer.Argument(help="The video: mp4, mkv, webm, mov or avi, with sound.")],
    every: Annotated[float, typer.Option(min=0.05, help="Seconds between analysed times.")] = 2.0,
    window: Annotated[float, typer.Option(min=0.1, help="Seconds of audio centred on each analysed time.")] = (
        DEFAULT_WINDOW_S
    ),
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default out/track/<video name>).")] = None,
    tracker: Annotated[
        str, typer.Option(help="Between analysed times: template (OpenCV template matching) or mil (cv2.TrackerMIL).")
    ] = "template",
    reuse: Annotated[
        bool, typer.Option(help="Skip Analyze/Refine when Generate agrees with the previous time (see README).")
    ] = True,
    sources: Annotated[int, typer.Option(min=1, max=8, help="K, sounding objects to find.")] = 1,
    n_votes: NVotesOpt = 5,
    votes_per_call: VotesPerCallOpt = None,
    tau_av: TauAv = 0.5,
    tau_audio: TauAudio = 0.75,
    backend: Backend = "qwen-omni",
    model: ModelOpt = None,
    graph: GraphOpt = "gar",
    prompts: PromptsOpt = None,
    protocol: ProtocolOpt = "gar",
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Localize the sound every --every seconds of VIDEO and follow it between; run again to resume."""
    if tracker not in TRACKERS:
        raise fail(f"--tracker {tracker!r} is not one of {', '.join(TRACKERS)}")
    check_votes(n_votes, votes_per_call)
    try:
        info = probe(video)
        topology = load_topology(graph)
        prompt_set = PromptSet(prompts)
        settings = Settings.from_options(
            prompt_set, protocol, backend, model, graph=topology.name,
            sources=sources, n_votes=n_votes, votes_per_call=votes_per_call, tau_av=tau_av, tau_audio=tau_audio,
        )  # fmt: skip
        chat = resolve_backend(backend, model)  # created once: every analysed time shares it
        spec = build_spec(
            command="track", backend=backend, model=model, chat=chat, topology=topology, prompts=prompt_set,
            settings=settings, every=every, window=window, tracker=tracker, reuse=reuse,
        )  # fmt: skip
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    folder = TrackFolder(out or Path("out/track") / video.stem, video.name)
    analyser = Analyser(
        info, settings, chat, topology, prompt_set, window, folder.media, folder.traces, reuse=reuse, spec=spec
    )  # fmt: skip
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}", markup=False),  # audio classes and errors: text, not markup
        console=err,
    )
    times = progress.add_task("analysing", total=None, note="")
    frames = progress.add_task("rendering", total=max(1, round(info.duration_s * info.fps)), note="", start=False)

    def on_time(done: int, total: int, entry: dict) -> None:
        classes = ", ".join(s["audio_class"] for s in entry["sources"]) or entry.get("error") or ""
        note = visible(f"{entry['t']:.1f}s {entry['status']}: {classes}"[:60], one_line=True)
        progress.update(times, completed=done, total=total, note=note)

    def on_frame(done: int) -> None:
        progress.start_task(frames)
        progress.update(frames, completed=done)

    console.print(
        visible(
            f"gar track · {video.name} · {info.duration_s:.1f} s at {info.fps:g} fps · every {every:g} s · "
            f"window {window:g} s · {tracker} tracker · reuse {'on' if reuse else 'off'} · graph {topology.name}",
            one_line=True,
        )
    )
    try:
        with progress:
            timeline = track(analyser, folder, every, tracker, on_time, on_frame)
    except KeyboardInterrupt:
        done = len(list(folder.times.glob("*.json"))) if folder.times.is_dir() else 0
        raise fail(
            f"interrupted with {done} times done in {folder.root}: run the same command again to continue", 130
        ) from None
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    s = timeline["summary"]
    console.print(
        visible(
            f"{s['times']} times: {s['analysed']} analysed, {s['reused']} reused, {s['failed']} failed"
            f" ({s['resumed']} from an earlier run); {s['frames']} frames, boxes by origin {s['boxes_by_origin']}"
        )
    )
    for entry in timeline["times"]:
        if entry["status"] == "failed":
            err.print(
                visible(f"gar: note: time {entry['t']:g} s failed: {entry['error']}"), markup=False, soft_wrap=True
            )
    if s["decode_error"]:
        err.print(visible(f"gar: note: {s['decode_error']}"), markup=False, soft_wrap=True)
    console.print(visible(f"wrote {timeline['annotated_video']} and {folder.timeline}; traces in {folder.traces}"))
    if s["analysed"] + s["reused"] == 0:
        raise fail("no time could be analysed (see the notes above)", EXIT_RUN_FAILED)
