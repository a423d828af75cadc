"""Early-stopping analysis, checked and measured on random vote sequences.

Draws many random sequences of N votes (some unparsable) and audio confidences, and for each
threshold setting (the paper's and the released code's per-dataset ones, METHOD.md) checks that the
adaptive graph's decision (gate on the votes collected until the decision is settled) equals the
full-N decision, then prints the mean votes used against N and the mean votes saved.

    python scripts/early_stop_report.py [--trials 2000] [--n 5] [--per-pass 1] [--unparsable 0.1] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random

from gar_agent.early_stop import refines, votes_used
from gar_agent.state import Settings, Vote, VoteAnswer

THRESHOLDS = {  # name: (tau_av, tau_audio)
    "paper": (0.5, 0.75),
    "MUSIC-Solo": (0.75, 0.75),
    "MUSIC-Duet": (0.75, 0.50),
    "VGGSound-Single": (0.50, 0.50),
    "VGGSound-Duet": (0.75, 0.75),
}


def random_sequence(rng: random.Random, n: int, unparsable: float) -> list[Vote]:
    """N votes from one simulated source: a keep rate and an av level per source, noise per vote."""
    keep_rate, av_level = rng.random(), rng.random()
    votes = []
    for i in range(n):
        if rng.random() < unparsable:
            votes.append(Vote(index=i, raw="not json", error="unparsable"))
            continue
        av = min(max(rng.gauss(av_level, 0.2), 0.0), 1.0)
        votes.append(Vote(index=i, raw="", parsed=VoteAnswer(av_consistency=av, keep=rng.random() < keep_rate)))
    return votes


def main() -> None:
    """Check adaptive == full N on every trial and print votes used and saved per threshold setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000, help="Random sequences per threshold setting.")
    parser.add_argument("--n", type=int, default=5, help="N, votes per source.")
    parser.add_argument("--per-pass", type=int, default=1, help="Votes asked per Analyze pass (--votes-per-call).")
    parser.add_argument("--unparsable", type=float, default=0.1, help="Chance that a vote fails to parse.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    trials = [(random_sequence(rng, args.n, args.unparsable), rng.random()) for _ in range(args.trials)]
    rows = {}
    for name, (tau_av, tau_audio) in THRESHOLDS.items():
        settings = Settings(n_votes=args.n, tau_av=tau_av, tau_audio=tau_audio)
        used_total = refined = 0
        used_if_heard: list[int] = []  # where audio passes tau_audio, so the votes decide
        for votes, audio_confidence in trials:
            used = votes_used(votes, args.n, audio_confidence, settings, args.per_pass)
            full = refines(votes, audio_confidence, settings)
            if refines(votes[:used], audio_confidence, settings) != full:
                raise AssertionError(f"{name}: adaptive and full N disagree on {votes!r}, audio {audio_confidence}")
            used_total += used
            refined += full
            if audio_confidence >= tau_audio:
                used_if_heard.append(used)
        mean_used = used_total / args.trials
        rows[name] = {
            "tau_av": tau_av,
            "tau_audio": tau_audio,
            "mean_votes_used": round(mean_used, 3),
            "n_votes": args.n,
            "mean_votes_saved": round(args.n - mean_used, 3),
            "saved_pct": round(100 * (1 - mean_used / args.n), 1),
            "refined_pct": round(100 * refined / args.trials, 1),
            "mean_votes_used_when_audio_passes": round(sum(used_if_heard) / max(1, len(used_if_heard)), 3),
        }
    if args.json:
        print(
            json.dumps(
                {
                    "trials": args.trials,
                    "per_pass": args.per_pass,
                    "unparsable": args.unparsable,
                    "settings": rows,
                },
                indent=2,
            )
        )
        return
    print(
        f"{args.trials} random sequences, N={args.n}, {args.per_pass} vote(s) a pass, "
        f"{args.unparsable:.0%} unparsable, seed {args.seed}: adaptive == full N on every one"
    )
    print(
        f"{'thresholds':<17}{'tau_av':>7}{'tau_audio':>10}{'votes used':>12}{'of N':>6}{'saved':>8}{'saved %':>9}{'refined %':>11}{'used if audio passes':>22}"
    )
    for name, r in rows.items():
        print(
            f"{name:<17}{r['tau_av']:>7.2f}{r['tau_audio']:>10.2f}{r['mean_votes_used']:>12.3f}{r['n_votes']:>6}"
            f"{r['mean_votes_saved']:>8.3f}{r['saved_pct']:>9.1f}{r['refined_pct']:>11.1f}"
            f"{r['mean_votes_used_when_audio_passes']:>22.3f}"
        )


if __name__ == "__main__":
    main()
