"""What the `gar` commands share: consoles, one-line errors, option types, writing results."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from gar_agent.cli.safe_text import visible
from gar_agent.errors import UserError
from gar_agent.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
from gar_agent.registry import PROTOCOLS, backend_names  # light: the adapters load when a model is built

# Every command imports this module: what a command does (LangGraph, LangChain, OpenCV, the
# metrics) is imported where it is done, so `gar --help` and light commands start in a fraction of
# a second (scripts/bench_imports.py measures it; tests/test_cli_imports.py keeps it so).

# Piped output (files, CI logs) gets a wide page instead of rich's 80-column default; COLUMNS sets another.
# No markup and no emoji codes in printed strings: they carry file names, trace fields and model text,
# and `[/]` or `:x:` in them is text (views style with Text objects; see safe_text).
console = Console(
    highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
)
err = Console(stderr=True, highlight=False, markup=False, emoji=False)

# Errors a user can fix: one line on stderr, exit 2, no traceback. Each module's own (MediaError,
# BackendError, ScriptError, PromptError, GraphError, TraceError, DatasetError...) is a UserError.
USER_ERRORS = (UserError, FileNotFoundError)
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


def check_votes(n_votes: int, votes_per_call: int | None) -> None:
    """--votes-per-call larger than N would silently be N: say so instead."""
    if votes_per_call is not None and votes_per_call > n_votes:
        raise fail(
            f"--votes-per-call {votes_per_call} is more than --n-votes {n_votes}: "
            f"a call asks at most the N votes of a source; give at most {n_votes}"
        )


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print `gar: error: ...` on stderr and return the Exit to raise."""
    err.print(f"gar: error: {visible(message)}", markup=False, soft_wrap=True)
    return typer.Exit(code)


TraceDir = Annotated[Path, typer.Option(help="Where run traces are saved.")]
Checkpoints = Annotated[
    Optional[str],
    typer.Option(help="Checkpoint store: memory | sqlite:PATH | postgresql://... (default SQLite in the trace dir)."),
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        help="qwen-omni: a hub id or local checkpoint dir (default Qwen/Qwen2.5-Omni-7B); openai: the served name.",
    ),
]
# Options `gar run` and `gar eval run` share: one definition each, so types and help agree.
NVotesOpt = Annotated[int, typer.Option(min=1, max=64, help="N, analysis votes per source.")]
VotesPerCallOpt = Annotated[Optional[int], typer.Option(min=1, max=64, help="Votes per model call (default N).")]
_TAU_AV_HELP, _TAU_AUDIO_HELP = "Gate threshold on av_consistency.", "Gate threshold on the audio confidence."
# gar run and gar track always have a threshold (their defaults); gar eval's None means "not given"
TauAv = Annotated[float, typer.Option(min=0.0, max=1.0, help=_TAU_AV_HELP)]
TauAudio = Annotated[float, typer.Option(min=0.0, max=1.0, help=_TAU_AUDIO_HELP)]
TauAvOpt = Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help=_TAU_AV_HELP)]
TauAudioOpt = Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help=_TAU_AUDIO_HELP)]
GraphOpt = Annotated[
    str, typer.Option(help="Topology: a shipped name (gar, adaptive, no_gate, ...) or a .py file (a path from here).")
]
PromptsOpt = Annotated[
    Optional[Path],
    typer.Option(help="Prompt set (for --protocol reference: an imported set, or the import's root)."),
]


def protocol_option(value: str | None) -> str | None:
    """--protocol: a registered name, or a `module:attr` the user typed, imported now and registered under
    that spec (the one way a protocol's code is imported from the command line; a recording's never is)."""
    if value is None:
        return None
    try:
        name = PROTOCOLS.trusted(value)
    except UserError as e:
        raise typer.BadParameter(str(e)) from None
    if name not in PROTOCOLS:
        raise typer.BadParameter(str(PROTOCOLS.error(value)))
    return name


ProtocolOpt = Annotated[
    str,
    typer.Option(
        help="gar (the project's method) | reference (the released GAR-SSL scripts exactly; needs imported prompts)"
        " | module:attr (your own protocol, README: Your own protocol).",
        callback=protocol_option,
    ),
]
MaxPixelsOpt = Annotated[
    Optional[int],
    typer.Option(
        min=4,
        help=f"Refuse frames above this many pixels, read from the file's header before decoding "
        f"(default {DEFAULT_MAX_PIXELS:,}, or {MAX_PIXELS_ENV}).",
    ),
]


def with_pixel_limit(command):
    """Run a command whose `max_pixels` option (--max-pixels) limits every frame it loads, in every
    thread and forked worker; an unusable GAR_MAX_PIXELS is one line before anything runs."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        ctx = kwargs.get("ctx")
        if ctx is not None and ctx.invoked_subcommand is not None:
            # a group's callback on its way to a subcommand (`gar eval compare`): the subcommand limits its
            # own frames, and gar_agent.media (OpenCV, soundfile) is start-up time a comparison never uses
            return command(*args, **kwargs)
        from gar_agent.media import MediaError, max_pixels, pixel_limit

        with pixel_limit(kwargs.get("max_pixels")):
            try:
                max_pixels()
            except MediaError as e:
                raise fail(str(e)) from None
            return command(*args, **kwargs)

    return wrapper


JsonOpt = Annotated[bool, typer.Option("--json", help="Print only the result JSON on stdout.")]
Backend = Annotated[
    str,
    typer.Option(
        help=" | ".join([*backend_names(), "scripted:FILE", "module:attr (any LangChain BaseChatModel)."]),
    ),
]


def step_printer(as_json: bool, fork_boxes: dict[int, list[int]] | None = None):
    """The live step view (none with --json); `fork_boxes`: a fork's edited initial boxes."""
    from gar_agent.cli.views import StepPrinter

    return None if as_json else StepPrinter(console, err, fork_boxes)


def result_document(result, video=None) -> str:
    """The result JSON; a run on a video also names the video and the time (`video`: the trace's
    InputFile of it), which the image/audio keys alone cannot say (they are the cut frame and window)."""
    if video is None:
        return result.model_dump_json(indent=2) + "\n"
    doc = json.loads(result.model_dump_json())
    doc["video"] = {
        "path": video.path,
        "at_s": video.at_s,
        "frame_time_s": video.frame_time_s,
        "window_s": list(video.window_s) if video.window_s else None,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def finish(result, media, out: Path, as_json: bool, trace_path: Path | None, video=None) -> None:
    """Write result.json and overlay.png, print the result, exit 1 if the run failed."""
    from gar_agent.cli.views import result_table, show
    from gar_agent.overlay import result_items, save_overlay

    out.mkdir(parents=True, exist_ok=True)
    document = result_document(result, video)
    (out / "result.json").write_text(document)
    if result.sources:
        save_overlay(media.image, result_items(result), out / "overlay.png")
    if as_json:
        sys.stdout.write(document)
    else:
        show(console, result_table(result), err, "the result table")
        console.print(
            visible(f"wrote {out / 'result.json'}" + (f" and {out / 'overlay.png'}" if result.sources else ""))
        )
        if trace_path:
            console.print(visible(f"trace {trace_path}"))
    if result.error:
        raise fail(result.error, EXIT_RUN_FAILED)
