"""The Python API for notebooks: saved runs and evaluation folders as plain Python, and one clip run or replayed.

    import gar_agent as gar
    run = gar.load_trace("traces/<run>")            # typed: run.steps, run.calls, run.votes, run.result
    ev = gar.load_eval("out/eval")                  # ev.metrics, ev.samples (plain dicts), ev.dataframe()
    again = gar.replay(run, tau_av=0.7, backend="scripted:answers.json")
    fresh = gar.run_clip("frame.jpg", "sound.wav", backend="scripted:answers.json")

Everything here goes through the same code as the CLI (trace store, eval store, the one run path);
errors are the CLI's one-line errors (gar_agent.errors.UserError and friends), raised. A recording is
data from someone else: a replay runs the shipped graph with the recorded sha256 or the graph you name,
never a file the recording names. pandas is optional: `dataframe()` says how to install it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from gar_agent.errors import UserError
from gar_agent.eval.store import EvalDir, read_config, read_sample
from gar_agent.result import RunResult
from gar_agent.spec import RunSpec
from gar_agent.trace.schema import Trace, TraceCall, TraceStep
from gar_agent.trace.store import read_trace, resolve_trace


@dataclass
class Run:
    """A saved run: the typed trace and where it lies."""

    trace: Trace
    path: Path

    @property
    def run_id(self) -> str:
        return self.trace.run_id

    @property
    def steps(self) -> list[TraceStep]:
        """Every node that ran, in order (node, source, pass, calls, what it wrote)."""
        return self.trace.steps

    @property
    def calls(self) -> list[TraceCall]:
        """Every model call, in step order (stage, source, template, prompt, answers, usage)."""
        return self.trace.calls()

    @property
    def result(self) -> RunResult:
        return self.trace.result

    @property
    def votes(self) -> list[dict]:
        """Each analysis vote of each source as a plain record (parsed fields, or why it was dropped)."""
        out = []
        for src in self.trace.final_state.sources:
            for v in src.votes:
                parsed = v.parsed
                out.append(
                    {
                        "source": src.index,
                        "index": v.index,
                        "av_consistency": parsed.av_consistency if parsed else None,
                        "keep": parsed.keep if parsed else None,
                        "role_tags": list(parsed.role_tags) if parsed else [],
                        "error": v.error,
                        "raw": v.raw,
                    }
                )
        return out


def load_trace(run: str | Path | Run, trace_dir: str | Path | None = None) -> Run:
    """A saved run from its trace file, run folder, or run id (prefix) in `trace_dir`."""
    if isinstance(run, Run):
        return run
    path = resolve_trace(run, trace_dir)
    return Run(read_trace(path), path)


def _gate(score) -> str:
    if score.failed:
        return "failed"
    if score.refined and score.skipped:
        return "mixed"
    return "refined" if score.refined else "skipped" if score.skipped else "no gate"


@dataclass
class Evaluation:
    """A `gar eval` folder: its settings, metrics and samples."""

    root: Path
    config: dict
    metrics: dict | None
    samples: list[dict]  # one plain record per readable sample file, in id order

    def dataframe(self):
        """The samples as a pandas DataFrame indexed by sample id (pandas is optional)."""
        try:
            import pandas as pd
        except ImportError:
            raise UserError("Evaluation.dataframe() needs pandas: pip install pandas (or use .samples)") from None
        return pd.DataFrame.from_records(self.samples, index="id") if self.samples else pd.DataFrame()

    def trace(self, sample_id: str) -> Run:
        """The saved run of one sample."""
        return load_trace(EvalDir(self.root).trace(sample_id))


def load_eval(folder: str | Path) -> Evaluation:
    """An evaluation folder: eval.json, metrics.json (None before the run ended) and every sample as a record."""
    from gar_agent.trace.store import TraceError, load_json

    d = EvalDir(Path(folder))
    config = read_config(d)
    try:
        metrics = load_json(d.metrics, "metrics file", nan_as_null=True)  # a folder from someone else: bounded
    except TraceError:
        metrics = None
    records = []
    for sid in d.stored_ids():
        doc = read_sample(d, sid)
        if doc is None:
            continue
        s = doc["score"]
        gt_classes = doc.get("gt_classes")
        classes = gt_classes if isinstance(gt_classes, list) else []
        records.append(
            {
                "id": sid,
                "ciou": doc.get("ciou"),
                "ap": doc.get("ap"),
                "failed": s.failed,
                "error": s.error,
                "gate": _gate(s),
                "refined": s.refined,
                "skipped": s.skipped,
                "classes": "+".join(map(str, classes)),
                "pred_boxes": s.pred_boxes,
                "gt_boxes": s.gt_boxes,
                "wall_s": doc.get("wall_s"),
                "trace": doc.get("trace"),
            }
        )
    return Evaluation(d.root, config, metrics if isinstance(metrics, dict) else None, records)


@dataclass
class Replay:
    """A replayed run: its result, its trace, and how its calls were served."""

    result: RunResult
    trace_path: Path | None
    reused: int
    new: int
    missing: list[str]


def replay(
    run: str | Path | Run,
    *,
    graph: str | None = None,
    prompts: str | Path | None = None,
    backend: str | None = None,
    model: str | None = None,
    trace_dir: str | Path | None = None,
    checkpoints: str | None = None,
    **settings,
) -> Replay:
    """Re-run a saved run with its recorded answers (settings: n_votes, tau_av, tau_audio, ...).

    Calls the recording lacks go to `backend` when given; without one the run stops at the first such
    call and `missing` names it (the result then carries the error). `checkpoints` is the store of the
    replay's LangGraph checkpoints as `gar replay --checkpoints` spells it (`memory`, `sqlite:PATH`, a
    `postgresql://` URL); None keeps none beyond the run.
    """
    from gar_agent.checkpoints import open_checkpointer
    from gar_agent.models.backends import resolve_backend
    from gar_agent.prompts import PromptSet
    from gar_agent.rerun.replay import replay as replay_run
    from gar_agent.rerun.replay import replay_model, trace_media
    from gar_agent.spec import backend_spec
    from gar_agent.topology import recorded_topology

    r = load_trace(run)
    # the shipped graph with the recorded sha256, or the one named: never a file the trace names
    topology = recorded_topology(r.trace.graph.name, r.trace.graph.sha256, graph, f"gar trace show {r.path}")
    recorded = Path(r.trace.prompts_dir) if r.trace.prompts_dir else None
    prompt_set = PromptSet(prompts or (recorded if recorded and recorded.is_dir() else None))
    media = trace_media(r.trace, r.path)
    fallback = resolve_backend(backend, model) if backend else None
    spec = backend_spec(backend, model, chat=fallback) if backend else None
    chat = replay_model(r.trace, fallback)
    saver = None if checkpoints is None else open_checkpointer(checkpoints, trace_dir or ".")
    done = replay_run(
        r.trace, media, topology, prompt_set, chat, trace_dir, checkpointer=saver, backend=spec, **settings
    )
    return Replay(done.outcome.result, done.trace_path, chat.served, chat.forwarded, list(chat.missing))


def run_clip(
    image: str | Path,
    audio: str | Path,
    *,
    spec: RunSpec | Run | str | Path | None = None,
    backend: str = "qwen-omni",
    model: str | None = None,
    graph: str = "gar",
    prompts: str | Path | None = None,
    protocol: str = "gar",
    sources: int = 1,
    n_votes: int = 5,
    votes_per_call: int | None = None,
    tau_av: float = 0.5,
    tau_audio: float = 0.75,
    trace_dir: str | Path | None = None,
) -> Run:
    """Run one clip (a frame and its audio) through a graph, as `gar run` does; its saved run.

    With `spec` (a RunSpec, a saved Run, or a spec.json / trace path) the clip runs as that run did:
    its backend rebuilt (`RunSpec.build_backend`), the shipped graph with its sha256, its templates and
    settings; the other options are then ignored. The trace goes to `trace_dir` (default: the
    project's traces folder), so the returned Run has steps, calls and votes like any loaded one.
    """
    from gar_agent.media import load_media
    from gar_agent.models.backends import resolve_backend
    from gar_agent.prompts import PromptSet
    from gar_agent.run import run_and_record
    from gar_agent.spec import build_spec
    from gar_agent.state import Settings
    from gar_agent.topology import load_topology

    with contextlib.ExitStack() as stack:
        if spec is not None:
            recorded = _spec_of(spec)
            topology, prompt_set, settings = _from_spec(recorded, stack)
            chat = recorded.build_backend()
            run_spec = build_spec(
                command="run", backend=recorded.backend, topology=topology, prompts=prompt_set, settings=settings
            )
        else:
            topology = load_topology(graph)
            prompt_set = PromptSet(prompts)
            settings = Settings.from_options(
                prompt_set, protocol, backend, model, graph=topology.name, sources=sources, n_votes=n_votes,
                votes_per_call=votes_per_call, tau_av=tau_av, tau_audio=tau_audio,
            )  # fmt: skip
            chat = resolve_backend(backend, model)
            run_spec = build_spec(
                command="run", backend=backend, model=model, chat=chat, topology=topology, prompts=prompt_set,
                settings=settings,
            )  # fmt: skip
        done = run_and_record(
            load_media(image, audio),
            settings,
            chat,
            topology=topology,
            prompts=prompt_set,
            trace_dir=trace_dir or _default_traces(),
            spec=run_spec,
        )
    assert done.trace_path is not None  # a trace_dir was given, so the trace was written
    return Run(read_trace(done.trace_path), done.trace_path)


def _spec_of(spec) -> RunSpec:
    """A RunSpec from what was given: itself, a Run's (or a trace file's) spec, or a spec.json."""
    from gar_agent.spec import SpecError
    from gar_agent.trace.spec_file import folder_spec, read_spec

    if isinstance(spec, RunSpec):
        return spec
    if isinstance(spec, Run) or Path(spec).name != "spec.json":
        r = load_trace(spec)
        full = r.trace.spec if r.trace.spec is None or not r.trace.spec.is_slim else folder_spec(r.path, r.trace.spec)
        if full is None:
            raise SpecError(f"run {r.run_id} records no run spec (a trace from before specs): give the options instead")
        return full
    return read_spec(spec)


def _from_spec(spec: RunSpec, stack: contextlib.ExitStack):
    """(topology, prompt set, settings) a spec names: the shipped graph with its sha256 (never its recorded
    source: that is shown, not run) and its templates (the recorded folder if unchanged, else the recorded
    texts written to a temporary folder: text, not code)."""
    import tempfile

    from gar_agent.prompts import PromptSet
    from gar_agent.topology import recorded_topology

    topology = recorded_topology(spec.graph.name, spec.graph.sha256)
    prompts = None
    if spec.prompts.path and Path(spec.prompts.path).is_dir():
        candidate = PromptSet(spec.prompts.path)
        if candidate.hashes() == spec.prompts.hashes:
            prompts = candidate
    if prompts is None and spec.prompts.templates:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gar-prompts-")))
        for name, text in spec.prompts.templates.items():
            if Path(name).name == name and not name.startswith("."):  # a file name, nothing that leaves the folder
                (folder / name).write_text(text, encoding="utf-8")
        prompts = PromptSet(folder)
    if prompts is None:
        raise UserError(
            f"the spec's prompt set {spec.prompts.path} is changed or gone and the spec holds no template texts: "
            "give prompts= instead"
        )
    return topology, prompts, spec.settings


def _default_traces() -> Path:
    from gar_agent.paths import TRACES_DIR

    return Path(TRACES_DIR)
