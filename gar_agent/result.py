"""The result document of a run (what `gar run --json` prints), read off the final state."""

from __future__ import annotations

from gar_agent.state import RunState, Usage


def run_usage(state: RunState) -> Usage:
    """Sum of every model call's usage in the run."""
    calls = [*(state.generate.calls if state.generate else []), *(c for s in state.sources for c in s.calls)]
    total = Usage()
    for c in calls:
        total = total + c.usage
    return total


def run_error(state: RunState) -> str | None:
    """Why the run failed: Generate's error, else the first source's."""
    return state.error or next((s.error for s in state.sources if s.error), None)


def result_document(state: RunState) -> dict:
    """The run's result JSON: inputs, settings, per-source boxes and decisions, usage, error."""
    s = state.settings
    sources = []
    for src in state.sources:
        a = src.analysis
        sources.append(
            {
                "box": src.box,
                "initial_box": src.initial_box,
                "description": src.description,
                "audio_class": src.audio_class,
                "audio_confidence": src.audio_confidence,
                "analysis": None
                if a is None
                else {
                    "av_consistency": a.av_consistency,
                    "keep": a.keep,
                    "role_tags": a.role_tags,
                    "anchor_votes": [v.model_dump() for v in a.anchor_votes],
                    "n_votes": a.n_votes,
                    "n_parsed": a.n_parsed,
                },
                "gate": None if src.gate is None else {"refine": src.gate.refine, "reasons": src.gate.reasons},
                "refined": src.refinement is not None,
                "refined_description": src.refinement.parsed.refined_description
                if src.refinement and src.refinement.parsed
                else None,
            }
        )
    return {
        "image": {"path": state.image.path, "width": state.image.width, "height": state.image.height},
        "audio": {
            "path": state.audio.path,
            "sample_rate": state.audio.sample_rate,
            "duration_s": state.audio.duration_s,
        },
        "settings": {
            "sources": s.sources,
            "n_votes": s.n_votes,
            "votes_per_call": s.batch,
            "tau_av": s.tau_av,
            "tau_audio": s.tau_audio,
            "graph": s.graph,
            "backend": s.backend,
        },
        "sources": sources,
        "usage": run_usage(state).model_dump(),
        "error": run_error(state),
    }
