"""Benchmark the local model at its physical limit: media encoded once, prefix prefilled once, clips batched.

Part 1, per clip (one GAR run through the graph, K=1, N votes): processor time, prompt tokens the
language model actually prefilled, model calls and wall time, for
  (a) the released code's style: one call per vote, the processor on every call, no cache;
  (b) votes batched: N samples in one call (the prompt is still prefilled N times);
  (b+m) votes batched, media encoded once per clip;
  (c) votes batched, media encoded once, the clip's prefix prefilled once (the default);
  (a+c) one call per vote with media and prefix once (a repeated prompt runs only its last token).
Part 2: samples per second of `gar eval` on synthetic samples at --batch-size 1, 4, 16.

    python scripts/bench_local.py                          # tiny random checkpoint, CPU
    python scripts/bench_local.py --model Qwen/Qwen2.5-Omni-7B --dtype bfloat16 --device cuda

A random tiny checkpoint answers noise, which would end every run at Generate; as in
bench_votes.py, Generate's two calls still run on the model (and are measured) but their answers are
replaced by a fixed box and class so that Analyze and Refine run. `gar eval` in part 2 runs as a user
runs it (with the tiny checkpoint its runs end at Generate).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_votes import ForcedGenerate  # noqa: E402  (a sibling script, not a package)

from gar_agent.cli.app import main as gar  # noqa: E402
from gar_agent.media import load_media  # noqa: E402
from gar_agent.models.qwen_omni import ChatQwenOmni  # noqa: E402
from gar_agent.models.qwen_omni.prefix import kv_bytes_per_token  # noqa: E402
from gar_agent.models.tiny import build_tiny_checkpoint  # noqa: E402
from gar_agent.runner import run_clip  # noqa: E402
from gar_agent.state import Settings  # noqa: E402

STYLES = {
    "a": ("one call per vote, processor every call", {"media_cache": False}, 1),
    "b": ("votes batched", {"media_cache": False}, None),
    "b+m": ("votes batched, media once", {"prefix_cache": False}, None),
    "c": ("votes batched, media once, prefix once", {}, None),
    "a+c": ("one call per vote, media once, prefix once", {}, 1),
}


class Recording(ForcedGenerate):
    """ForcedGenerate that also keeps each call's response metadata (prefill tokens, processor time)."""

    metas: list = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        self.metas.append(result.generations[0].message.response_metadata)
        return result


def synthetic_clip(folder: Path, name: str, seed: int, size: tuple[int, int], seconds: float) -> tuple[Path, Path]:
    """A noise frame (jpg) and a chirp with noise (wav)."""
    rng = np.random.RandomState(seed)
    w, h = size
    image = folder / f"{name}.jpg"
    Image.fromarray(rng.randint(0, 255, (h, w, 3), dtype=np.uint8)).save(image, quality=90)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * seed % 7) * t) + 0.05 * rng.randn(t.size)
    audio = folder / f"{name}.wav"
    sf.write(audio, wave.astype(np.float32), 16000)
    return image, audio


def clip_figures(model_path: str, args, clips: list, style: str) -> dict:
    """Median per-clip figures of one style over the clips (each clip once, after a warm-up clip)."""
    _, options, votes_per_call = STYLES[style]
    qwen = ChatQwenOmni(
        model=model_path, device=args.device, dtype=args.dtype, max_new_tokens=args.max_new_tokens, **options
    )
    forced = {
        "audio": json.dumps({"audio_class": "violin", "audio_confidence_score": 0.9}),
        "generate": json.dumps({"bbox": [40, 40, 200, 200], "description": "the source"}),
    }
    model = Recording(inner=qwen, forced=forced)
    if args.fixed_length:  # noise answers end at random lengths: equal lengths make the wall times comparable
        qwen._loaded().model.generation_config.min_new_tokens = args.max_new_tokens
    settings = Settings(n_votes=args.n_votes, votes_per_call=votes_per_call or args.n_votes)
    rows = []
    try:
        for i, media in enumerate([clips[-1], *clips]):  # the first is a warm-up of another clip
            model.metas = []
            t0 = time.perf_counter()
            run_clip(media, settings, model)
            wall = time.perf_counter() - t0
            if i > 0:
                rows.append(
                    {
                        "calls": len(model.metas),
                        "processor_s": sum(m["processor_s"] for m in model.metas),
                        "prompt_tokens": sum(m["prefill_tokens"] for m in model.metas),
                        "cached_tokens": sum(m["cached_input_tokens"] for m in model.metas),
                        "wall_s": wall,
                    }
                )
    finally:
        qwen._loaded().model.generation_config.min_new_tokens = None
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def write_dataset(root: Path, n: int, size: tuple[int, int], seconds: float) -> tuple[Path, Path, Path]:
    """n synthetic vggss-single samples: frames/, audio/, gt.json."""
    frames, audio = root / "frames", root / "audio"
    frames.mkdir(parents=True)
    audio.mkdir()
    records = []
    for i in range(n):
        image, wav = synthetic_clip(root, f"s{i:03d}", 100 + i, size, seconds)
        image.rename(frames / image.name)
        wav.rename(audio / wav.name)
        records.append({"file": f"s{i:03d}", "class": "a", "bbox": [[0.2, 0.2, 0.6, 0.7]]})
    gt = root / "gt.json"
    gt.write_text(json.dumps(records))
    return frames, audio, gt


def eval_rate(model_path: str, args, data: tuple[Path, Path, Path], batch: int, out: Path) -> float:
    """Samples per second of one `gar eval` run (model loading excluded by a warm-up run before)."""
    frames, audio, gt = data
    argv = ["eval", "--dataset", "vggss-single", "--frames", str(frames), "--audio", str(audio), "--gt", str(gt)]
    argv += ["--backend", "qwen-omni", "--model", model_path, "--out", str(out), "--no-vis"]
    argv += ["--n-votes", str(args.n_votes), "--batch-size", str(batch)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        gar(argv)  # its progress and metrics table are not what is measured here
    return args.eval_samples / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint dir or hub id (default: a tiny checkpoint built now)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--n-votes", type=int, default=5)
    parser.add_argument("--clips", type=int, default=3, help="clips per style (median reported)")
    parser.add_argument("--size", default="640x360", help="frame size WxH")
    parser.add_argument("--audio-s", type=float, default=3.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument(
        "--fixed-length",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="part 1: every answer exactly --max-new-tokens long (default: on for the tiny checkpoint)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="gar-bench-local-"))
    model_path = args.model or str(build_tiny_checkpoint(tmp / "tiny"))
    if args.fixed_length is None:
        args.fixed_length = args.model is None
    size = tuple(int(v) for v in args.size.lower().split("x"))
    clips = [load_media(*synthetic_clip(tmp, f"c{i}", i, size, args.audio_s)) for i in range(args.clips)]

    per_clip = {style: clip_figures(model_path, args, clips, style) for style in STYLES}
    base = per_clip["a"]["prompt_tokens"]

    data = write_dataset(tmp / "eval", args.eval_samples, size, args.audio_s)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    eval_rate(model_path, args, data, 1, tmp / "warm")  # load weights and first-call costs once
    rates = {b: eval_rate(model_path, args, data, b, tmp / f"eval-b{b}") for b in batches}

    cfg = ChatQwenOmni(model=model_path, device=args.device, dtype=args.dtype)._loaded().model.config.text_config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    item = 2 if args.dtype in ("bfloat16", "float16") else 4
    kv_token = kv_bytes_per_token(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim, item)

    figures = {
        "model": model_path,
        "n_votes": args.n_votes,
        "clip": {"size": args.size, "audio_s": args.audio_s},
        "per_clip": per_clip,
        "prompt_tokens_vs_a": {s: per_clip[s]["prompt_tokens"] / base for s in STYLES},
        "eval_samples_per_s": rates,
        "kv_bytes_per_token": kv_token,
        "kv_7b_bf16_bytes_per_token": kv_bytes_per_token(28, 4, 128, 2),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"model {model_path}  N={args.n_votes}  frame {args.size}  audio {args.audio_s:g} s  median of {args.clips}")
    print(f"{'style':6}{'':44}{'calls':>6}{'processor s':>12}{'prompt tok':>11}{'x (a)':>7}{'cached':>8}{'wall s':>8}")
    for style, (label, _, _) in STYLES.items():
        f = per_clip[style]
        print(
            f"{style:6}{label:44}{f['calls']:>6.0f}{f['processor_s']:>12.3f}{f['prompt_tokens']:>11.0f}"
            f"{f['prompt_tokens'] / base:>7.2f}{f['cached_tokens']:>8.0f}{f['wall_s']:>8.2f}"
        )
    print("gar eval, samples/s: " + "  ".join(f"B={b}: {r:.2f}" for b, r in rates.items()))
    print(
        f"KV cache per prompt token: {kv_token / 1024:.1f} KiB here; Qwen2.5-Omni-7B bf16 "
        f"{figures['kv_7b_bf16_bytes_per_token'] / 1024:.0f} KiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
