"""Folders `gar view` serves in the tests (tests/test_view_api.py, tests/test_view_browser.py): scripted
runs saved with the project's runner and trace store (single skipped, single refined, duet, failed), a
corrupt and a foreign trace.json, a small `gar eval` folder run with a scripted model, a parent folder of
both, and two runs of the demo with the shipped and an edited graph file.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from benchmarks import MINI, RectModel, make_benchmark
from helpers import audio_answer, boxes_answer, scripted, vote

from gar_agent.cli.app import main
from gar_agent.media import load_media
from gar_agent.prompts import PromptSet
from gar_agent.record import build_trace
from gar_agent.runner import run_clip
from gar_agent.state import Settings
from gar_agent.topology import load_topology
from gar_agent.trace.store import write_trace

REFINE = json.dumps({"bbox": [30, 60, 120, 210], "changed": True, "ops": {"type": "delta", "dx": -8}})


def make_runs(root: Path, example) -> Path:
    """A traces folder: single-skip, single-refined, duet, failed (+ a corrupt and a foreign trace)."""
    image, audio, _ = example
    media = load_media(image, audio)
    traces = root / "traces"
    topology, prompts = load_topology("gar"), PromptSet()
    runs = {
        "single-skip": (
            Settings(n_votes=3, tau_av=0.5, tau_audio=0.75),
            scripted(
                audio=[audio_answer(["violin"], [0.9])],
                generate=[boxes_answer([[38, 70, 128, 215]])],
                analyze=[vote(0.8, True), vote(0.7, True), "not json"],
            ),
        ),
        "single-refined": (
            Settings(n_votes=3, tau_av=0.7, tau_audio=0.75),
            scripted(
                audio=[audio_answer(["violin"], [0.8])],
                generate=[boxes_answer([[38, 70, 128, 215]])],
                analyze=[vote(0.6, True), vote(0.5, False), vote(0.4, True)],
                refine=[REFINE],
            ),
        ),
        "duet": (
            Settings(sources=2, n_votes=2, tau_av=0.5, tau_audio=0.75),
            scripted(
                audio=[audio_answer(["violin", "drum"], [0.92, 0.6])],
                generate=[boxes_answer([[38, 70, 128, 215], [205, 96, 300, 190]])],
                analyze=[vote(0.9, True)],
                refine={"1": [json.dumps({"bbox": [190, 80, 318, 205], "changed": True})]},
            ),
        ),
        "failed": (Settings(), scripted(audio=[audio_answer(["violin"], [0.9])], generate=["no idea", "still no"])),
    }
    for run_id, (settings, model) in runs.items():
        outcome = run_clip(media, settings, model, topology=topology, prompts=prompts, thread_id=run_id)
        write_trace(build_trace(outcome, media, topology, prompts, backend="scripted"), traces)
    (traces / "corrupt").mkdir()
    (traces / "corrupt" / "trace.json").write_text('{"schema_version": 1, "run_id": "corr')
    (traces / "foreign").mkdir()
    (traces / "foreign" / "trace.json").write_text(json.dumps({"hello": "not a gar trace"}))
    return traces


class MixedModel(RectModel):
    """RectModel, but a box touching the top edge gets poor votes (refined), and 880 Hz is a "violin"."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration, ChatResult

        stage = ((run_manager.metadata if run_manager else None) or {}).get("gar_stage")
        blocks = [b for b in messages[-1].content if isinstance(b, dict)]
        text = " ".join(b.get("text", "") for b in blocks)
        answer = None
        if stage == "analyze" and "[56, 0, 167, 223]" in text:
            answer = vote(0.2, False)
        elif stage == "audio":
            sound = next(b for b in blocks if b.get("type") == "audio")
            wave, rate = sf.read(io.BytesIO(base64.b64decode(sound["base64"])))
            peak = np.argmax(np.abs(np.fft.rfft(wave))) * rate / len(wave)
            cls = "violin" if peak > 600 else "dog"
            answer = json.dumps({"audio_class": cls, "audio_confidence_score": 0.9})
        if answer is None:
            return super()._generate(messages, stop, run_manager, **kwargs)
        n = int(kwargs.get("n") or 1)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer)) for _ in range(n)])


def make_eval(root: Path) -> Path:
    """A `gar eval` folder: a (skipped, cIoU 1), b (refined, cIoU 1/3, violin), c and e failed, d missing."""
    frames, audio, gt = make_benchmark(root, "vggss-single", MINI)
    t = np.arange(8000) / 16000
    sf.write(audio / "b.wav", (0.3 * np.sin(2 * np.pi * 880 * t)).astype(np.float32), 16000)
    out = root / "eval"
    args = ["eval", "--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt]
    code = main([str(a) for a in [*args, "--backend", "view_folders:MixedModel", "--out", out]])
    assert code == 1  # e is a corrupt frame: bad input fails its sample and the run exits 1 (the rest is scored)
    return out


def make_mixed(root: Path, runs: Path, evaluation: Path) -> Path:
    """A parent folder as a researcher keeps one: traces/ beside two evaluations, one of them swept."""
    mixed = root / "project"
    shutil.copytree(runs, mixed / "traces", symlinks=True)
    shutil.copytree(evaluation, mixed / "eval-tau05")
    shutil.copytree(evaluation, mixed / "evals" / "swept")
    assert main(["eval", "sweep", str(mixed / "evals" / "swept"), "--tau-av", "0.3,0.5", "--tau-audio", "0.75"]) == 0
    return mixed


EDIT = "# researcher edit </pre><script>window.pwned = 1</script>\n"


def make_graph_runs(root: Path, example) -> Path:
    """Two runs of the demo: one with the shipped `gar` graph, one with an edited copy of it (also named gar)."""
    from gar_agent.paths import GRAPHS_DIR

    image, audio, script = example
    edited = root / "gar.py"
    edited.write_text((GRAPHS_DIR / "gar.py").read_text() + EDIT)
    traces = root / "traces"
    for run_id, graph in (("shipped", "gar"), ("edited", str(edited))):
        args = ["run", image, audio, "--sources", 2, "--backend", f"scripted:{script}", "--graph", graph, "--json"]
        assert main([str(a) for a in [*args, "--trace-dir", traces, "--out", root / run_id]]) == 0
        [new] = [p for p in traces.iterdir() if p.is_dir() and len(p.name) == 32]
        new.rename(traces / run_id)
    return traces
