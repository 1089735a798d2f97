"""Whether a round drafts at all (batch 1): the hardware-aware policy's answer for machines and prompts
where even the best verification length does not pay for the drafting round.

Algorithm 1 picks how many drafted tokens to verify, down to none; but the round that drafted them has
been paid by then. Where the draft's acceptance is low next to the cost of a round (a small target on a
CPU: a drafting round is ~15 % of a one-token forward there), rounds that end with little accepted are
slower than plain one-token steps. :class:`DraftingGate` compares what drafting rounds have delivered
with what plain steps deliver, both measured (tokens per second, smoothed), and skips drafting while
drafting is behind. A skipped round is a plain one-token step (the target's own token; the draft's
context catches up with the skipped positions at the next drafting round).

Exploration keeps the comparison fresh: after ``explore_every`` skipped rounds in a row one round drafts
anyway; the interval doubles (up to ``explore_max``) while such forced rounds are the only drafting, and
returns to ``explore_every`` when drafting wins on its own (the batched scheduler's rule,
:mod:`dspark_hf.batching.request_state`). The decision depends only on rounds already finished, never on
the round it decides, so speculative sampling stays lossless.

A gate outlives one ``generate()`` call: :func:`kept_gate` stores it on the draft (as the online
acceptance estimates are), keyed by the machine, model and dtype of its cost profile, so a second call
starts from what the first measured instead of re-running the warm-up rounds; each call starts its
exploration afresh (:meth:`DraftingGate.start_call`), so a prompt on which drafting pays is found within
``explore_every`` rounds.
"""

from __future__ import annotations


class DraftingGate:
    """Measured tokens per second of drafting rounds against plain steps; see the module docstring.

    ``plain_seconds``: the first estimate of a plain step (the cost profile's one-token forward);
    ``warmup``: drafting rounds before the gate may skip; ``smoothing``: weight of the newest round in
    the exponential averages."""

    def __init__(self, plain_seconds: float, *, warmup: int = 8, explore_every: int = 8, explore_max: int = 64,
                 smoothing: float = 0.2) -> None:
        self.warmup = int(warmup)
        self.explore_min = int(explore_every)
        self.explore_max = int(explore_max)
        self.explore_every = self.explore_min
        self.smoothing = float(smoothing)
        self.plain_seconds = float(plain_seconds)  # per plain step (one token)
        self.draft_tokens = 0.0  # per drafting round, smoothed
        self.draft_seconds = 0.0
        self.drafting_rounds = 0
        self.skipped_in_a_row = 0
        self._forced = False

    def drafting_ahead(self) -> bool:
        """Whether drafting rounds have delivered at least plain steps' tokens per second."""
        if self.drafting_rounds < self.warmup or self.draft_seconds <= 0:
            return True
        return self.draft_tokens / self.draft_seconds >= 1.0 / self.plain_seconds

    def should_draft(self) -> bool:
        """This round's choice (call once per round, then :meth:`observe` its outcome)."""
        if self.drafting_ahead():
            self._forced = False
            return True
        if self.skipped_in_a_row + 1 >= self.explore_every:
            self._forced = True
            return True
        return False

    def start_call(self) -> None:
        """A new call on the same machine: the measured averages stay, the exploration interval returns to
        ``explore_every`` and the count of skipped rounds to zero."""
        self.skipped_in_a_row = 0
        self.explore_every = self.explore_min
        self._forced = False

    def observe(self, drafted: bool, emitted: int, seconds: float) -> None:
        """Record a finished round: whether it drafted, the tokens it added and its wall-clock seconds."""
        a = self.smoothing
        if not drafted:
            self.skipped_in_a_row += 1
            if emitted > 0 and seconds > 0:
                self.plain_seconds = (1 - a) * self.plain_seconds + a * seconds / emitted
            return
        self.skipped_in_a_row = 0
        if self.drafting_rounds == 0:
            self.draft_tokens, self.draft_seconds = float(emitted), float(seconds)
        else:
            self.draft_tokens = (1 - a) * self.draft_tokens + a * emitted
            self.draft_seconds = (1 - a) * self.draft_seconds + a * seconds
        self.drafting_rounds += 1
        if self._forced:
            ahead = self.drafting_ahead()
            self.explore_every = self.explore_min if ahead else min(2 * self.explore_every, self.explore_max)
            self._forced = False
        else:
            self.explore_every = self.explore_min


def kept_gate(owner, key, make) -> DraftingGate:
    """The gate stored on ``owner`` (a draft) under ``key``, made by ``make()`` the first time and
    :meth:`~DraftingGate.start_call`-ed on every later one."""
    gates = getattr(owner, "_dspark_drafting_gates", None)
    if not isinstance(gates, dict):
        gates = {}
        owner._dspark_drafting_gates = gates
    gate = gates.get(key)
    if gate is None:
        gate = gates[key] = make()
    else:
        gate.start_call()
    return gate
