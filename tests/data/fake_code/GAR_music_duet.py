import argparse

from model_utils import run_anchor_voting_multi, run_chat
from prompts_duet import (
    build_prompt_analysis_anchor_voting,
    build_prompt_audio_duet,
    build_prompt_locate_duet,
    build_prompt_refine,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_votes", type=int, default=7)
    parser.add_argument("--tau_av", type=float, default=0.75)
    parser.add_argument("--tau_audio", type=float, default=0.50)
    args = parser.parse_args()
    prompt_a = build_prompt_locate_duet(dataset_name="MUSIC PAIR")
    prompt_b = build_prompt_audio_duet(dataset_name="MUSIC PAIR")
    text_a = run_chat(None, None, contents=[{"type": "text", "text": prompt_a}], system_text="Duet A (MUSIC PAIR).")
    text_b = run_chat(None, None, contents=[{"type": "text", "text": prompt_b}], system_text="Duet B (MUSIC PAIR).")
    for k in range(2):
        analysis_k = run_anchor_voting_multi(
            None,
            None,
            "i",
            "a",
            lambda bb=[1, 2, 3, 4]: build_prompt_analysis_anchor_voting(bb, "x", 0.5, 10, 10),
            n=args.n_votes,
        )
        pass
        prompt_c = build_prompt_refine([1, 2, 3, 4], "x", 10, 10, analysis=analysis_k, max_delta_px=4)
        text_c = run_chat(
            None, None, contents=[{"type": "text", "text": prompt_c}], system_text=f"Duet C for source {k + 1}."
        )
