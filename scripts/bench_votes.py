"""Benchmark cheap voting: N votes in one call per Analyze pass vs one call per vote.

Runs one clip through the graph on a local Qwen-Omni checkpoint twice per repeat: with
`--votes-per-call N` and with `--votes-per-call 1` (the released code's style), and prints model
calls, input tokens, wall time of Analyze and of the whole run, and the ratios.

    gar model tiny /tmp/tiny-omni
    python scripts/bench_votes.py --model /tmp/tiny-omni [IMAGE AUDIO] [--n-votes 5] [--repeats 3]

A tiny random-weight checkpoint answers noise, which would end every run at Generate. So that
Analyze runs, Generate's two calls still go to the model (their cost is measured) but their answers
are replaced by a fixed box and sound class (`--box`). Analyze and Refine answers are the model's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from gar_agent.demo import make_example
from gar_agent.media import load_media
from gar_agent.models.qwen_omni import ChatQwenOmni
from gar_agent.models.tiny import build_tiny_checkpoint
from gar_agent.runner import run_clip
from gar_agent.state import Settings


class ForcedGenerate(BaseChatModel):
    """Calls the model for every stage, but answers Generate's calls with fixed text."""

    inner: BaseChatModel
    forced: dict[str, str]

    @property
    def _llm_type(self) -> str:
        return "forced-generate"

    @property
    def supports_multiple_samples(self) -> bool:
        return getattr(self.inner, "supports_multiple_samples", False)

    def model_frame(self, width: int, height: int) -> tuple[int, int]:
        return self.inner.model_frame(width, height)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        result = self.inner._generate(messages, stop=stop, **kwargs)
        stage = (run_manager.metadata if run_manager else {}).get("gar_stage")
        if stage in self.forced:
            result = ChatResult(
                generations=[
                    ChatGeneration(
                        message=AIMessage(
                            content=self.forced[stage],
                            usage_metadata=g.message.usage_metadata,
                            response_metadata=g.message.response_metadata,
                        )
                    )
                    for g in result.generations
                ]
            )
        return result


def measure(model, media, n_votes: int, votes_per_call: int) -> dict:
    """One run: calls, input tokens, Analyze and whole-run wall time."""
    out = run_clip(media, Settings(n_votes=n_votes, votes_per_call=votes_per_call), model)
    calls = [c for c in out.state.calls if c.stage == "analyze"]
    usage = out.result["usage"]
    return {
        "model_calls": usage["model_calls"],
        "input_tokens": usage["input_tokens"],
        "analyze_calls": sum(c.usage.model_calls for c in calls),
        "analyze_input_tokens": sum(c.usage.input_tokens for c in calls),
        "analyze_s": sum(c.usage.wall_s for c in calls),
        "run_s": out.wall_s,
        "votes_parsed": out.state.sources[0].analysis.n_parsed if out.state.sources else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", help="frame (default: the demo's generated frame)")
    parser.add_argument("audio", nargs="?", help="audio (default: the demo's generated audio)")
    parser.add_argument("--model", help="checkpoint dir or hub id (default: a tiny checkpoint built now)")
    parser.add_argument("--n-votes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--box", default="38,70,128,215", help="Generate's forced box x1,y1,x2,y2")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="gar-bench-"))
    image, audio = (args.image, args.audio) if args.image else make_example(tmp)[:2]
    model_path = args.model or str(build_tiny_checkpoint(tmp / "tiny"))
    media = load_media(image, audio)
    qwen = ChatQwenOmni(model=model_path, max_new_tokens=args.max_new_tokens, device=args.device)
    forced = {
        "audio": json.dumps({"audio_class": "violin", "audio_confidence_score": 0.9}),
        "generate": json.dumps({"bbox": [int(v) for v in args.box.split(",")], "description": "the source"}),
    }
    model = ForcedGenerate(inner=qwen, forced=forced)
    measure(model, media, args.n_votes, args.n_votes)  # warm-up: load weights, first-call costs

    runs: dict[str, list[dict]] = {"batched": [], "per_vote": []}
    for _ in range(args.repeats):  # interleaved so drift hits both styles alike
        runs["batched"].append(measure(model, media, args.n_votes, args.n_votes))
        runs["per_vote"].append(measure(model, media, args.n_votes, 1))
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in runs.items()}
    b, p = med["batched"], med["per_vote"]
    ratios = {
        "analyze_speedup": p["analyze_s"] / b["analyze_s"],
        "run_speedup": p["run_s"] / b["run_s"],
        "run_input_tokens_ratio": b["input_tokens"] / p["input_tokens"],
        "analyze_input_tokens_ratio": b["analyze_input_tokens"] / p["analyze_input_tokens"],
    }
    if args.json:
        print(json.dumps({"model": model_path, "n_votes": args.n_votes, "median": med, "ratios": ratios}, indent=2))
        return 0
    print(f"model {model_path}  N={args.n_votes}  median of {args.repeats} runs  (image {image}, audio {audio})")
    print(f"{'':28}{'votes-per-call N':>18}{'votes-per-call 1':>18}")
    for field in ("model_calls", "input_tokens", "analyze_calls", "analyze_input_tokens", "analyze_s", "run_s"):
        print(
            f"{field:28}{b[field]:>18.3f}{p[field]:>18.3f}"
            if field.endswith("_s")
            else f"{field:28}{b[field]:>18.0f}{p[field]:>18.0f}"
        )
    for name, value in ratios.items():
        print(f"{name:28}{value:>18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
