"""Per-slot acceptance estimates learned while generating, for drafts without a confidence head.

Slot ``k``'s conditional acceptance ``c_k`` (accepted, given slots before it were) is estimated from
finished rounds: a round that verified ``L`` slots and accepted ``A`` of them shows slot ``k`` reached
when ``k <= A`` and ``k < L``, and accepted when ``k < A``. Counts decay by ``decay`` per observed
round, so the estimates follow the text being written; a Beta(``prior * prior_mean``,
``prior * (1 - prior_mean)``) prior keeps unseen slots at ``prior_mean``.

The estimates depend only on earlier rounds, never on the block being verified, so any policy that
schedules from them is lossless.
"""

from __future__ import annotations

from dspark_hf.telemetry import StepRecord


class SlotAcceptanceEstimator:
    """Discounted Beta estimates of ``c_k`` for ``k = 0 .. block_size - 1``."""

    def __init__(self, block_size: int, *, prior_mean: float = 0.5, prior: float = 2.0, decay: float = 0.98) -> None:
        self.block_size = int(block_size)
        self.prior_mean = float(prior_mean)
        self.prior = float(prior)
        self.decay = float(decay)
        self.reached = [0.0] * self.block_size
        self.accepted = [0.0] * self.block_size
        self.rounds = 0

    def update(self, verified: int, accepted: int) -> None:
        """Add one round that verified ``verified`` slots and accepted the first ``accepted``."""
        self.rounds += 1
        for k in range(self.block_size):
            self.reached[k] *= self.decay
            self.accepted[k] *= self.decay
            if k < verified and k <= accepted:
                self.reached[k] += 1.0
                self.accepted[k] += 1.0 if k < accepted else 0.0

    def observe(self, record: StepRecord) -> None:
        self.update(record.verified, record.accepted)

    def estimates(self) -> list[float]:
        """Posterior means of ``c_k``."""
        return [
            (self.accepted[k] + self.prior * self.prior_mean) / (self.reached[k] + self.prior) for k in range(self.block_size)
        ]

    def __repr__(self) -> str:
        return f"SlotAcceptanceEstimator(rounds={self.rounds}, estimates={[round(c, 3) for c in self.estimates()]})"
