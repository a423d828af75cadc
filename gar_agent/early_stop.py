"""Early-stopping analysis: stop voting once the remaining votes cannot change the gate's decision.

Pure (no model, no I/O). A vote still to come can be anything: any av_consistency in [0, 1], keep
either way, or unparsable (dropped, which lowers n_parsed and with it the strict-majority
threshold). For each count u of unparsable votes among the r remaining, the completion where every
other remaining vote says keep with av 1 is the most favourable to skipping refinement, and keep
false with av 0 the least: the gate is monotone in the keep count and in the mean (float sums are
monotone too). So the 2(r + 1) extreme completions, aggregated and gated by the method's own rules,
decide exactly whether every completion gives the same decision. (In exact arithmetic the u = 0
pair already bounds the rest, since one more parsed extreme vote moves the keep count and the mean
at least as far as dropping it; trying every u costs little and needs no such argument.)

The collected votes alone are the completion where every remaining vote is unparsable, so a gate
that sees only them makes the decision full N would have made whenever the decision is settled.
"""

from __future__ import annotations

from gar_agent.rules import aggregate_votes, gate
from gar_agent.state import Settings, Vote, VoteAnswer

_UNPARSABLE = Vote(index=-1, raw="", error="a remaining vote that fails to parse")
_FOR_SKIP = Vote(index=-1, raw="", parsed=VoteAnswer(av_consistency=1.0, keep=True))
_FOR_REFINE = Vote(index=-1, raw="", parsed=VoteAnswer(av_consistency=0.0, keep=False))


def refines(votes: list[Vote], audio_confidence: float, settings: Settings) -> bool:
    """The gate's decision on these votes: True when the source goes to Refine."""
    return gate(aggregate_votes(votes), audio_confidence, settings).refine


def decision_settled(votes: list[Vote], n_votes: int, audio_confidence: float, settings: Settings) -> bool:
    """Whether every way the remaining `n_votes - len(votes)` votes can turn out gives one decision."""
    remaining = n_votes - len(votes)
    if remaining <= 0:
        return True
    seen: set[bool] = set()
    for unparsable in range(remaining + 1):
        for extreme in (_FOR_SKIP, _FOR_REFINE):
            completion = [*votes, *[extreme] * (remaining - unparsable), *[_UNPARSABLE] * unparsable]
            seen.add(refines(completion, audio_confidence, settings))
            if len(seen) > 1:
                return False
    return True


def votes_used(
    sequence: list[Vote], n_votes: int, audio_confidence: float, settings: Settings, per_pass: int = 1
) -> int:
    """How many of a full vote sequence the adaptive loop collects, `per_pass` votes at a time."""
    used = min(per_pass, n_votes)  # the loop always makes its first pass
    while used < n_votes and not decision_settled(sequence[:used], n_votes, audio_confidence, settings):
        used = min(used + per_pass, n_votes)
    return used
