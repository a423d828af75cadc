import argparse

from model_utils import run_anchor_voting_multi, run_chat
from prompts_single import (
    build_prompt_analysis_anchor_voting,
    build_prompt_audio_only,
    build_prompt_locate,
    build_prompt_refine,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_votes", type=int, default=7)
    parser.add_argument("--tau_av", type=float, default=0.75)
    parser.add_argument("--tau_audio", type=float, default=0.75)
    args = parser.parse_args()
    prompt_a = build_prompt_locate()
    prompt_b = build_prompt_audio_only()
    text_a = run_chat(
        None,
        None,
        contents=[{"type": "image", "path": "i"}, {"type": "text", "text": prompt_a}],
        system_text="System A (solo).",
    )
    text_b = run_chat(None, None, contents=[{"type": "text", "text": prompt_b}], system_text="System B (solo).")
    analysis = run_anchor_voting_multi(
        None,
        None,
        "i",
        "a",
        lambda: build_prompt_analysis_anchor_voting([1, 2, 3, 4], "x", 0.5, 10, 10),
        n=args.n_votes,
    )
    prompt_c = build_prompt_refine([1, 2, 3, 4], "x", 10, 10, analysis=analysis, max_delta_px=4)
    text_c = run_chat(None, None, contents=[{"type": "text", "text": prompt_c}], system_text="System C.")
