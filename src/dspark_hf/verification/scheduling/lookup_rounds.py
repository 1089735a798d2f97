"""Lookup rounds: when verifying a free prompt-lookup guess beats drafting (or a plain step), and how much of it.

A round may verify a guess copied from earlier in the sequence (:func:`dspark_hf.drafting.ngram_lookup.ngram_continuation`)
instead of drafting: the guess costs no drafting round, only the target's verification forward. Where a
drafting round is a sizeable share of a step (this project's CPU: 7-10 ms against a 47 ms one-token forward)
and the draft's first slot is accepted a third of the time, a guess that is right as often is the better
buy. :class:`LookupRounds` keeps, per n-gram size of the match, discounted per-slot acceptance estimates of
such guesses (:class:`~.acceptance_estimates.SlotAcceptanceEstimator`) and picks the verified length that
maximises expected tokens per second on the target's cost curve, ``(1 + sum_{j<=l} prod_{i<=j} c_i) /
seconds(l + 1)``; the round verifies the guess when that rate is at least the alternative's (drafting
rounds' or plain steps' measured tokens per second), otherwise it drafts (or steps plainly) as it would
have. Estimates start at ``prior_mean`` (so an n-gram size is tried before it is judged) and learn from
lookup rounds only.

Every input of the choice (the estimates, the n-gram size, the measured rates) depends on finished rounds
and committed tokens, never on the target's distribution at the guessed positions, so verifying the guess
keeps sampling lossless.
"""

from __future__ import annotations

from typing import Callable

from dspark_hf.verification.scheduling.acceptance_estimates import SlotAcceptanceEstimator


class LookupRounds:
    """Per n-gram size acceptance estimates of lookup guesses of up to ``max_tokens`` tokens, and the
    length to verify (see the module docstring)."""

    def __init__(self, max_tokens: int, *, prior_mean: float = 0.5, prior: float = 2.0, decay: float = 0.98) -> None:
        self.max_tokens = int(max_tokens)
        self._estimator_args = dict(prior_mean=prior_mean, prior=prior, decay=decay)
        self.estimators: dict[int, SlotAcceptanceEstimator] = {}

    def estimator(self, ngram: int) -> SlotAcceptanceEstimator:
        est = self.estimators.get(ngram)
        if est is None:
            est = self.estimators[ngram] = SlotAcceptanceEstimator(self.max_tokens, **self._estimator_args)
        return est

    def length(self, ngram: int, available: int, seconds_for: Callable[[int], float], rate_to_beat: float) -> int:
        """The number of guessed tokens to verify, ``0`` for none: the ``l`` in ``1..available`` with the most
        expected tokens per second, ``seconds_for(l + 1)`` the round's cost with ``l + 1`` tokens in the
        target's forward, when that rate is at least ``rate_to_beat`` (tokens per second)."""
        estimates = self.estimator(ngram).estimates()
        best_rate, best = 0.0, 0
        survival, expected = 1.0, 1.0
        for l in range(1, min(available, self.max_tokens) + 1):
            survival *= estimates[l - 1]
            expected += survival
            seconds = seconds_for(l + 1)
            rate = expected / seconds if seconds > 0 else 0.0
            if rate > best_rate:
                best_rate, best = rate, l
        return best if best and best_rate >= rate_to_beat else 0

    def observe(self, ngram: int, verified: int, accepted: int) -> None:
        """A finished lookup round of ``ngram``'s guess: ``verified`` tokens, the first ``accepted`` accepted."""
        self.estimator(ngram).update(verified, accepted)

    def __repr__(self) -> str:
        return f"LookupRounds({ {n: [round(c, 2) for c in e.estimates()[:3]] for n, e in sorted(self.estimators.items())} })"
