"""`gar eval replay` and `gar eval compare`: the research loop over whole evaluations.

Only options are parsed here; the work is in gar_agent.eval.replay and gar_agent.eval.compare.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gar_agent.cli.common import (
    EXIT_RUN_FAILED,
    USER_ERRORS,
    ModelOpt,
    PromptsOpt,
    TauAudioOpt,
    TauAvOpt,
    VotesPerCallOpt,
    check_votes,
    console,
    err,
    fail,
    protocol_option,
)
from gar_agent.cli.eval_cmd import _exit_for, _report, eval_app
from gar_agent.cli.serving import ApiKeyEnvOpt, BaseUrlOpt, MaxRetriesOpt, RequestTimeoutOpt, served_options
from gar_agent.eval.compare import CompareError, compare_folders
from gar_agent.eval.store import SettingsMismatch, hold_folder

EXIT_MISSING_CALL = 3  # as `gar replay`: the recording lacks a call and no backend was given


@eval_app.command("replay")
def replay_command(
    src: Annotated[Path, typer.Argument(help="A gar eval folder whose runs were recorded.")],
    out: Annotated[Path, typer.Option(help="The new evaluation folder (run the same command again to resume).")],
    graph: Annotated[Optional[str], typer.Option(help="Another topology: a shipped name or a .py file.")] = None,
    prompts: PromptsOpt = None,
    protocol: Annotated[
        Optional[str],
        typer.Option(help="gar | reference | module:attr (default: the source's).", callback=protocol_option),
    ] = None,
    n_votes: Annotated[Optional[int], typer.Option(min=1, max=64, help="N votes per source.")] = None,
    votes_per_call: VotesPerCallOpt = None,
    tau_av: TauAvOpt = None,
    tau_audio: TauAudioOpt = None,
    backend: Annotated[
        Optional[str],
        typer.Option(help="Model for the calls the recording lacks; 'recorded': the backend that made the source."),
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    max_retries: MaxRetriesOpt = None,
    request_timeout: RequestTimeoutOpt = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Samples replayed at once.")] = 1,
    strict: Annotated[bool, typer.Option(help="Count failed samples as misses instead of leaving them out.")] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="Send the calls of samples that failed in the source to --backend.")
    ] = False,
    vis: Annotated[bool, typer.Option(help="Write vis/<id>.jpg (prediction and GT drawn).")] = True,
) -> None:
    """Replay every sample of SRC under another graph, prompts, protocol, N or threshold: recorded calls are
    reused, only the calls the recording lacks go to --backend."""
    # here, not at the top: the replay loads LangGraph and the media stack, which `gar eval compare` never needs
    from gar_agent.eval.replay import Changes, named_backend, plan, prepare, recorded_backend

    changes = Changes(graph, prompts, protocol, n_votes, votes_per_call, tau_av, tau_audio)
    try:
        p = plan(src, out, changes, backend)
        check_votes(p.settings.n_votes, p.settings.votes_per_call)
        fallback, answering = None, None
        if backend == "recorded":
            fallback, answering = recorded_backend(p, model)
        elif backend is not None:
            serving = served_options(backend, base_url, api_key_env, max_retries, request_timeout)
            fallback, answering = named_backend(backend, model, serving)
    except (*USER_ERRORS, SettingsMismatch) as e:
        raise fail(str(e)) from None
    with contextlib.ExitStack() as held:  # one process writes DST at a time, as `gar eval run` holds OUT
        try:
            held.enter_context(hold_folder(p.dst.root))
            resumed = prepare(p, answering)
        except (*USER_ERRORS, SettingsMismatch) as e:
            raise fail(str(e)) from None
        _replay(p, out, backend, fallback, resumed, workers, vis, strict, retry_failed)


def _replay(p, out, backend, fallback, resumed, workers, vis, strict, retry_failed) -> None:
    """The samples replayed with a progress bar, then the report (exit 3 when some need the model)."""
    from gar_agent.eval.replay import run_replay

    s = p.settings
    console.rule(
        f"gar eval replay · {p.src.root} -> {out} · graph {p.topology.name} · N={s.n_votes} "
        f"tau_av={s.tau_av:g} tau_audio={s.tau_audio:g} · backend {backend or 'none (recording only)'}"
    )
    for note in p.notes:
        err.print(f"gar: note: {note}", markup=False, soft_wrap=True)
    ids = p.ids
    if resumed:
        console.print(f"resuming {out}", markup=False)
    progress = Progress(
        TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )
    task = progress.add_task("replay", total=len(ids))
    try:
        with progress:
            report = run_replay(
                p,
                fallback,
                workers=workers,
                vis=vis,
                strict=strict,
                retry_failed=retry_failed,
                on_sample=lambda o: progress.advance(task),
            )
    except KeyboardInterrupt:
        raise fail("interrupted: run the same command again to resume", 130) from None
    _report(p.dst, report.metrics, f"replay · {p.src_config['dataset']} · {out}")
    console.print(
        f"calls: {report.reused} reused from the recording, {report.new} new · tokens: {report.reused_tokens} "
        f"reused, {report.new_tokens} new · {report.replayed} replayed, {report.resumed} already done, "
        f"{report.carried_over} failed in the source (carried over) · wrote {p.dst.root / 'replay.json'}",
        markup=False,
        soft_wrap=True,
    )
    if report.unavailable:
        u = report.unavailable[0]
        why = f"{len(report.unavailable)} sample(s) could not be replayed ({u['id']}: {u['error']})"
        if not report.needs_model:  # they are not in DST: its numbers are not the whole evaluation's
            raise fail(f"{why}; they are not written: restore them and run the same command again", EXIT_RUN_FAILED)
        err.print(f"gar: note: {why}", markup=False, soft_wrap=True)
    if report.needs_model:
        first = report.needs_model[0]
        raise fail(
            f"{len(report.needs_model)} sample(s) need a call the recording lacks (e.g. {first['id']}: {first['call']}); "
            "they are not written: run the same command with --backend B (or --backend recorded) to finish them",
            EXIT_MISSING_CALL,
        )
    _exit_for(report.metrics, errors_fail=True)  # as gar eval run: bad input or an internal error exits 1


@eval_app.command("compare")
def compare_command(
    folders: Annotated[list[Path], typer.Argument(help="Two or more gar eval folders: A B [C ...] (B-A, C-A, ...).")],
    resamples: Annotated[int, typer.Option(min=100, max=1_000_000, help="Bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    strict: Annotated[bool, typer.Option(help="Count failed samples as misses instead of leaving them out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout.")] = False,
    changed: Annotated[int, typer.Option(min=0, help="Changed samples listed per comparison.")] = 10,
) -> None:
    """Each folder's metrics and B-A with a paired bootstrap 95% interval, McNemar on the cIoU@0.5 hits,
    and the samples that changed."""
    if len(folders) < 2:
        raise fail("gar eval compare needs two or more folders: A B [C ...]")
    try:
        report = compare_folders(folders, resamples=resamples, seed=seed, strict=strict)
    except (CompareError, SettingsMismatch) as e:
        raise fail(str(e)) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
        return
    _print_comparison(report, changed)


def _fmt(v, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def _print_comparison(report: dict, shown: int) -> None:
    base = report["folders"][0]
    for c in report["comparisons"]:
        other = c["folder"]
        table = Table(
            "metric", "A", "B", "B-A", "95% interval", title=f"{other} vs {base} · {c['n_paired']} paired samples"
        )
        for m in c["metrics"]:
            ci = m["ci95"]
            table.add_row(
                m["metric"],
                _fmt(m["a"]),
                _fmt(m["b"]),
                _fmt(m["delta"]),
                "-" if ci is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]",
            )
        console.print(table)
        mc = c["mcnemar"]
        console.print(
            f"McNemar on cIoU@0.5 hits: {mc['b_only']} hit only in B, {mc['a_only']} only in A, exact p = "
            + ("-" if mc["p_value"] is None else f"{mc['p_value']:.4g}"),
            markup=False,
        )
        if c["only_a"] or c["only_b"]:
            console.print(
                f"evaluated in only one folder: {len(c['only_a'])} only in A, {len(c['only_b'])} only in B",
                markup=False,
            )
        s = c["summary"]
        console.print(
            f"changed samples: {s['up']} cIoU up, {s['down']} down; crossed 0.5: {s['up_0.5']} up, {s['down_0.5']} down;"
            f" crossed 0.3: {s['up_0.3']} up, {s['down_0.3']} down; gate decision changed on {s['gate_changed']}",
            markup=False,
            soft_wrap=True,
        )
        for title, key in (("by gate decision (A -> B)", "by_gate"), ("by class", "by_class")):
            groups = c[key]
            if groups:
                t = Table("group", "n", "cIoU up", "down", "mean delta", title=title)
                for g in groups[:shown]:
                    t.add_row(g["group"], str(g["n"]), str(g["up"]), str(g["down"]), _fmt(g["mean_delta"], False))
                console.print(t)
        if c["changed"]:
            t = Table(
                "sample", "cIoU A", "cIoU B", "gate A", "gate B", title=f"largest changes (of {len(c['changed'])})"
            )
            for row in c["changed"][:shown]:
                t.add_row(
                    row["id"], _fmt(row["ciou_a"], False), _fmt(row["ciou_b"], False), row["gate_a"], row["gate_b"]
                )
            console.print(t)
