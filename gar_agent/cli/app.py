"""The `gar` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Optional

import click
import typer
from rich.text import Text

from gar_agent.cli.common import (
    EXIT_BAD_INPUT,
    USER_ERRORS,
    Backend,
    Checkpoints,
    GraphOpt,
    JsonOpt,
    MaxPixelsOpt,
    ModelOpt,
    NVotesOpt,
    PromptsOpt,
    ProtocolOpt,
    TauAudio,
    TauAv,
    TraceDir,
    VotesPerCallOpt,
    check_votes,
    console,
    err,
    fail,
    finish,
    step_printer,
    with_pixel_limit,
)
from gar_agent.cli.lazy import LazyGroup
from gar_agent.cli.local_model import PrefixCacheOpt, local_options
from gar_agent.cli.safe_text import visible
from gar_agent.cli.serving import (
    ApiKeyEnvOpt,
    BaseUrlOpt,
    MaxResponseBytesOpt,
    MaxRetriesOpt,
    RequestTimeoutOpt,
    RetryBackoffOpt,
    served_options,
)
from gar_agent.paths import TRACES_DIR

_typer_click: ModuleType  # click's exceptions module, as the installed typer uses it
try:  # typer >= 0.26 ships its own copy of click with its own exception classes
    from typer._click import exceptions as _typer_click
except ImportError:  # pragma: no cover - older typer uses click itself
    _typer_click = click.exceptions

app = typer.Typer(
    cls=LazyGroup,  # the commands of other modules load when run (gar_agent.cli.lazy)
    help="GAR-SSL: find what makes the sound in a video frame, and see how the model reasoned.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: rich's panels showed every flag as "--json <bool>"
)


@app.command()
@with_pixel_limit
def run(
    image: Annotated[Path, typer.Argument(help="The frame: jpg, png or webp; or a video (mp4, mkv, webm, mov, avi).")],
    audio: Annotated[
        Optional[Path], typer.Argument(help="The audio: wav, flac, mp3 or ogg, any rate/channels (none for a video).")
    ] = None,
    at: Annotated[
        Optional[float], typer.Option(help="Video: time of the frame, seconds (default: the middle).")
    ] = None,
    window: Annotated[
        Optional[float], typer.Option(min=0.1, help="Video: seconds of audio centred on --at (default 3).")
    ] = None,
    sources: Annotated[int, typer.Option(min=1, max=8, help="K, sounding objects to find.")] = 1,
    n_votes: NVotesOpt = 5,
    votes_per_call: VotesPerCallOpt = None,
    tau_av: TauAv = 0.5,
    tau_audio: TauAudio = 0.75,
    backend: Backend = "qwen-omni",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    max_retries: MaxRetriesOpt = None,
    request_timeout: RequestTimeoutOpt = None,
    retry_backoff: RetryBackoffOpt = None,
    max_response_bytes: MaxResponseBytesOpt = None,
    graph: GraphOpt = "gar",
    prompts: PromptsOpt = None,
    protocol: ProtocolOpt = "gar",
    out: Annotated[Path, typer.Option(help="Where result.json and overlay.png go.")] = Path("out"),
    max_audio_s: Annotated[
        float, typer.Option(min=0.0, help="Longer audio keeps a centred window (0: keep all).")
    ] = 30.0,
    as_json: JsonOpt = False,
    trace_dir: TraceDir = TRACES_DIR,
    embed_media: Annotated[bool, typer.Option(help="Copy the inputs beside the trace (portable).")] = False,
    checkpoints: Checkpoints = None,
    prefix_cache: PrefixCacheOpt = True,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Localize the sound sources of IMAGE given AUDIO, showing every step."""
    from gar_agent.checkpoints import open_checkpointer
    from gar_agent.models.backends import resolve_backend
    from gar_agent.prompts import PromptSet
    from gar_agent.record import input_files
    from gar_agent.run import run_and_record
    from gar_agent.spec import build_spec
    from gar_agent.state import Settings
    from gar_agent.topology import load_topology
    from gar_agent.video.clip import run_media

    check_votes(n_votes, votes_per_call)
    try:
        topology = load_topology(graph)
        prompt_set = PromptSet(prompts)
        settings = Settings.from_options(
            prompt_set, protocol, backend, model, graph=topology.name,
            sources=sources, n_votes=n_votes, votes_per_call=votes_per_call, tau_av=tau_av, tau_audio=tau_audio,
        )  # fmt: skip
        media, video = run_media(image, audio, at=at, window=window, max_audio_s=max_audio_s, out=out)
        serving = served_options(
            backend, base_url, api_key_env, max_retries, request_timeout, retry_backoff, max_response_bytes
        )
        local = local_options(backend, prefix_cache)
        chat = resolve_backend(backend, model, **serving, **local)
        spec = build_spec(
            command="run", backend=backend, model=model, options={**serving, **local}, chat=chat,
            topology=topology, prompts=prompt_set, settings=settings,
            at=at, window=window, max_audio_s=max_audio_s,
        )  # fmt: skip
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    for notice in media.notices:
        err.print(f"gar: note: {visible(notice)}", markup=False)
    if not as_json:
        console.rule(
            visible(
                f"gar run · {image.name}{f' + {audio.name}' if audio else ''} · K={sources} N={n_votes} · "
                f"graph {topology.name}",
                one_line=True,
            )
        )
    try:
        # a video's frame and window are files in --out, overwritten by the next run: keep copies beside the trace
        inputs = {**input_files(media), "video": video.input_file()} if video else None
        done = run_and_record(
            media,
            settings,
            chat,
            topology=topology,
            prompts=prompt_set,
            trace_dir=trace_dir,
            checkpointer=open_checkpointer(checkpoints, trace_dir),
            on_step=step_printer(as_json),
            inputs=inputs,
            embed_media=embed_media or video is not None,
            spec=spec,
        )
    except USER_ERRORS as e:  # a bug of ours keeps its traceback
        raise fail(str(e)) from None
    finish(done.outcome.result, media, out, as_json, done.trace_path, inputs["video"] if inputs else None)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the example and its results go.")] = Path("out/demo"),
    as_json: JsonOpt = False,
    trace_dir: TraceDir = TRACES_DIR,
) -> None:
    """Run the graph on a generated duet with SCRIPTED answers (no model needed)."""
    from gar_agent.demo import make_example

    image, audio, script = make_example(out)
    if not as_json:
        console.print(
            Text("DEMO with SCRIPTED answers", style="bold yellow").append(
                visible(f" (from {script}), not a real model's: it shows every step of the graph on a generated duet.")
            )
        )
    run(
        image,
        audio,
        sources=2,
        n_votes=5,
        votes_per_call=None,
        tau_av=0.5,
        tau_audio=0.75,
        backend=f"scripted:{script}",
        model=None,
        graph="gar",
        prompts=None,
        out=out,
        max_audio_s=30.0,
        as_json=as_json,
        trace_dir=trace_dir,
        embed_media=False,
        checkpoints=None,
    )


def _print_version(value: bool) -> None:
    if value:
        from gar_agent.version import __version__

        console.print(f"gar-agent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """GAR-SSL: find what makes the sound in a video frame, and see how the model reasoned."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors become one line on stderr with exit code 2."""
    try:
        code = app(args=argv, prog_name="gar", standalone_mode=False)
    except (click.UsageError, _typer_click.UsageError) as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # help was printed already
            return EXIT_BAD_INPUT
        where = f" ({e.ctx.command_path})" if e.ctx else ""
        err.print(visible(f"gar: error: {e.format_message()}{where}; see --help"), markup=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except (click.exceptions.Exit, typer.Exit) as e:
        return e.exit_code
    except (click.Abort, typer.Abort):
        err.print("gar: aborted", markup=False)
        return 130
    except OSError as e:
        if e.filename is None:  # not about a path: a fault of ours or of the machine keeps its traceback
            raise
        # a path the command was given that cannot be made or written (a file where --out wants a folder,
        # a read-only place): the user's to fix, so one line naming it
        err.print(
            visible(f"gar: error: {e.filename}: {e.strerror or e}: check the path given"), markup=False, soft_wrap=True
        )
        return EXIT_BAD_INPUT
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
