"""Early stopping, pure (gar_agent.early_stop): a decision declared settled is the full-N decision, on
thousands of random vote sequences and against every completion of a prefix."""

import random
from itertools import product

from gar_agent.early_stop import decision_settled, refines, votes_used
from gar_agent.state import Settings, Vote, VoteAnswer

THRESHOLDS = [(0.5, 0.75), (0.75, 0.75), (0.75, 0.5), (0.5, 0.5)]


# Values on and around the thresholds so equality cases (which pass the gate) are exercised.
AV_VALUES = [0.0, 0.1, 0.25, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0]


def random_votes(rng: random.Random, n: int) -> list[Vote]:
    out = []
    for i in range(n):
        if rng.random() < 0.2:
            out.append(Vote(index=i, raw="x", error="unparsable"))
        else:
            av = rng.choice(AV_VALUES) if rng.random() < 0.6 else rng.random()
            out.append(Vote(index=i, raw="", parsed=VoteAnswer(av_consistency=av, keep=rng.random() < 0.6)))
    return out


def random_case(rng: random.Random):
    tau_av, tau_audio = rng.choice(THRESHOLDS)
    n = rng.randint(1, 7)
    audio = rng.choice([tau_audio, rng.random(), 0.9])
    return random_votes(rng, n), audio, Settings(n_votes=n, tau_av=tau_av, tau_audio=tau_audio)


def test_adaptive_decision_equals_full_n_on_thousands_of_random_sequences():
    rng = random.Random(20260406)
    saved = 0
    for _ in range(3000):
        votes, audio, settings = random_case(rng)
        n, full = settings.n_votes, refines(votes, audio, settings)
        for per_pass in (1, 2):
            used = votes_used(votes, n, audio, settings, per_pass)
            assert refines(votes[:used], audio, settings) == full
            saved += n - used
        # every prefix that is declared settled already has the full-N decision
        for k in range(n + 1):
            if decision_settled(votes[:k], n, audio, settings):
                assert refines(votes[:k], audio, settings) == full
    assert saved > 0


def test_decision_settled_is_exact_against_every_completion():
    """Settled iff no completion flips the decision, trying each remaining vote as unparsable or
    keep true/false at av 0 or 1 (the extremes; any other value lies between them)."""
    rng = random.Random(7)
    unparsable = Vote(index=-1, raw="", error="x")
    options = [unparsable] + [
        Vote(index=-1, raw="", parsed=VoteAnswer(av_consistency=av, keep=keep))
        for av in (0.0, 1.0)
        for keep in (False, True)
    ]
    for _ in range(1000):
        votes, audio, settings = random_case(rng)
        k = rng.randint(max(0, settings.n_votes - 4), settings.n_votes)  # up to 5**4 completions
        prefix, rest = votes[:k], settings.n_votes - k
        outcomes = {refines([*prefix, *c], audio, settings) for c in product(options, repeat=rest)}
        assert decision_settled(prefix, settings.n_votes, audio, settings) == (len(outcomes) == 1)


def test_unparsable_votes_leave_the_majority_to_the_votes_that_parse():
    s = Settings(n_votes=5, tau_av=0.5, tau_audio=0.5)
    bad = [Vote(index=i, raw="x", error="unparsable") for i in range(3)]
    keep = Vote(index=3, raw="", parsed=VoteAnswer(av_consistency=0.9, keep=True))
    # the last vote decides: unparsable leaves 1 of 1 keep (skip), "keep false" makes 1 of 2 (refine)
    assert not decision_settled([*bad, keep], 5, 0.9, s)
    assert refines([*bad, keep], 0.9, s) is False
    # nothing parsed and nothing left: the analysis is empty and the gate refines
    assert decision_settled(bad + bad[:2], 5, 0.9, s) and refines(bad + bad[:2], 0.9, s)
    # 3 keep votes at av 0.9 of N=4: keep and av >= 0.675 however the fourth turns out
    assert decision_settled([keep] * 3, 4, 0.9, Settings(n_votes=4, tau_av=0.5, tau_audio=0.5))
