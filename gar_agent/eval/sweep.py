"""Gate sweep without a model: re-decide each recorded sample under other tau_av / tau_audio / N.

Every sample's trace is replayed (gar_agent.rerun.replay, no fallback model) with the new
thresholds and vote count. A setting that needs an answer the recording lacks (a stricter gate
sends a source to Refine that was skipped; a larger N asks for more votes) is not guessed: the
sample is counted as needing the model for that setting and left out of its metrics.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gar_agent.eval.score import metrics_document, score_result
from gar_agent.eval.store import EvalDir, load_scores, read_config
from gar_agent.media import MediaError
from gar_agent.prompts import PromptError, PromptSet
from gar_agent.rerun.replay import replay, replay_model, trace_media
from gar_agent.spec import RunSpec, SpecError
from gar_agent.topology import Topology, recorded_topology
from gar_agent.trace.schema import Trace
from gar_agent.trace.spec_file import read_spec
from gar_agent.trace.store import TraceError, atomic_write, read_trace


@dataclass(frozen=True)
class GateSetting:
    """One point of the grid."""

    tau_av: float
    tau_audio: float
    n_votes: int


def grid(tau_av: Sequence[float], tau_audio: Sequence[float], n_votes: Sequence[int]) -> list[GateSetting]:
    """Every combination, in the order given (tau_av slowest)."""
    return [GateSetting(a, b, n) for a, b, n in itertools.product(tau_av, tau_audio, n_votes)]


@dataclass
class SettingResult:
    """What one setting decided: its metrics and the samples it could not decide."""

    setting: GateSetting
    metrics: dict  # over the re-decided samples plus the recorded failures
    decided: int = 0  # samples replayed to the end under this setting
    needs_model: list[dict] = field(default_factory=list)  # {"id", "call"}: the first missing call

    def as_json(self) -> dict:
        """The entry of sweep.json."""
        return {
            **self.setting.__dict__,
            "n_decided": self.decided,
            "n_needs_model": len(self.needs_model),
            "needs_model": self.needs_model,
            "metrics": self.metrics,
        }


@dataclass
class SweepReport:
    """The whole sweep."""

    recorded: GateSetting
    results: list[SettingResult]
    unavailable: list[dict]  # {"id", "error"}: samples whose trace or inputs cannot be read
    strict: bool

    def as_json(self, dataset: str) -> dict:
        """sweep.json."""
        return {
            "dataset": dataset,
            "strict": self.strict,
            "recorded": self.recorded.__dict__,
            "settings": [r.as_json() for r in self.results],
            "n_unavailable": len(self.unavailable),
            "unavailable": self.unavailable,
        }


class _Graphs:
    """Topologies and prompt sets loaded once per graph and folder, shared by every replay.

    A recorded graph is run as the shipped graph with its sha256 (or the user's `--graph`), never from
    the file the eval folder names: GraphError (stop, one line) when neither is at hand.
    """

    def __init__(self, graph: str | None = None, show: str = "gar trace show RUN") -> None:
        self.graph, self.show = graph, show
        self.topologies: dict[str, Topology] = {}
        self.prompts: dict[str, PromptSet] = {}

    def topology(self, name: str, sha256: str) -> Topology:
        key = self.graph or sha256
        if key not in self.topologies:
            self.topologies[key] = recorded_topology(name, sha256, self.graph, self.show)
        return self.topologies[key]

    def prompt_set(self, trace: Trace, folder: RunSpec | None) -> PromptSet:
        """The recorded templates (the folder's spec.json, when the trace's prompt hashes agree with it),
        else, for a folder without a spec, the prompt folder the trace names if it is there."""
        if folder is not None and trace.spec is not None and trace.spec.prompts.hashes == folder.prompts.hashes:
            key = "spec:" + json.dumps(folder.prompts.hashes, sort_keys=True)
            if key not in self.prompts:
                self.prompts[key] = folder.prompts.prompt_set() or PromptSet(trace.prompts_dir)
            return self.prompts[key]
        if trace.prompts_dir not in self.prompts:
            self.prompts[trace.prompts_dir] = PromptSet(trace.prompts_dir)
        return self.prompts[trace.prompts_dir]


def sweep(
    d: EvalDir,
    settings: Sequence[GateSetting],
    strict: bool = False,
    on_sample: Callable[[str], None] | None = None,
    graph: str | None = None,
) -> SweepReport:
    """Replay every stored sample under each setting; metrics per setting over what it decided.

    A sample whose recorded run failed stays failed in every setting (its failure is not a gate
    decision); with `strict` it is a miss, as in summarize(). The graph is the shipped one with the
    recorded hash, or `graph` (a name or file the user gives); else GraphError before any replay.
    """
    config = read_config(d)
    rec = config["settings"]
    recorded = GateSetting(rec["tau_av"], rec["tau_audio"], rec["n_votes"])
    scores, unreadable = load_scores(d)
    graphs = _Graphs(graph, f"gar trace show {d.traces}/<id>")
    try:
        folder_spec = read_spec(d.spec) if d.spec.is_file() else None
    except SpecError:
        folder_spec = None  # a damaged spec.json: the traces still name their prompt folder
    records: dict[GateSetting, list] = {s: [] for s in settings}
    decided: dict[GateSetting, int] = {s: 0 for s in settings}
    needs: dict[GateSetting, list[dict]] = {s: [] for s in settings}
    unavailable = [{"id": sid, "error": "sample file unreadable"} for sid in unreadable]
    for score in scores:
        if on_sample:
            on_sample(score.id)
        if score.failed:
            for s in settings:
                records[s].append(score)
            continue
        try:
            trace_path = d.trace(score.id)
            trace = read_trace(trace_path)
            media = trace_media(trace, trace_path)
            prompts = graphs.prompt_set(trace, folder_spec)
        except (TraceError, MediaError, PromptError) as e:
            unavailable.append({"id": score.id, "error": str(e)})
            continue
        topology = graphs.topology(trace.graph.name, trace.graph.sha256)  # GraphError: the whole sweep stops
        for s in settings:
            model = replay_model(trace)  # a fresh one per replay: it serves each recorded answer once
            done = replay(
                trace, media, topology, prompts, model, n_votes=s.n_votes, tau_av=s.tau_av, tau_audio=s.tau_audio
            )
            if model.missing:
                needs[s].append({"id": score.id, "call": model.missing[0]})
            else:
                decided[s] += 1
                records[s].append(score_result(score.id, score.gt_boxes, done.outcome.result))
    results = [SettingResult(s, metrics_document(records[s], config, strict), decided[s], needs[s]) for s in settings]
    for r in results:  # per-setting entries need no copy of the folder's settings and missing ids
        for key in ("settings", "missing", "n_missing"):
            r.metrics.pop(key, None)
    return SweepReport(recorded, results, unavailable, strict)


def write_sweep(d: EvalDir, report: SweepReport) -> Path:
    """Write sweep.json atomically."""
    atomic_write(d.sweep, json.dumps(report.as_json(read_config(d)["dataset"]), indent=1) + "\n")
    return d.sweep
