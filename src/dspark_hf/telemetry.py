"""Per-step telemetry of a speculative generate() call.

One :class:`StepRecord` per round: how many tokens the draft proposed, how many the policy
sent to the target for verification, how many the target accepted, the tokens the round added
(accepted + the target's correction or bonus token), the confidences of every drafted slot, and where the
verified tokens came from (``source``: the draft, none, or a prompt-lookup guess).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class StepRecord:
    """One round. ``emitted`` counts the target's own token, so ``emitted == accepted + 1``
    except where generation stopped inside the round (EOS or max length). ``source``: ``"draft"`` (a
    drafting round), ``"plain"`` (the policy skipped drafting: a one-token step, ``proposed == 0``) or
    ``"lookup"`` (the round verified a prompt-lookup guess instead of drafting, ``proposed`` its offered
    length, ``confidences`` ``None``; :mod:`dspark_hf.verification.scheduling.lookup_rounds`)."""

    step: int
    proposed: int
    verified: int
    accepted: int
    emitted: int
    confidences: list[float] | None
    draft_seconds: float
    step_seconds: float
    source: str = "draft"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationTelemetry:
    """All rounds of one call. ``prefill_tokens`` is the token the target drew after the prompt,
    before the first drafting round."""

    steps: list[StepRecord] = field(default_factory=list)
    prefill_tokens: int = 0

    @property
    def target_forwards(self) -> int:
        return len(self.steps) + (1 if self.prefill_tokens else 0)

    @property
    def new_tokens(self) -> int:
        return self.prefill_tokens + sum(s.emitted for s in self.steps)

    @property
    def tau(self) -> float:
        """Mean tokens added per target forward after the prefill (accepted + bonus), over all rounds (those
        that skipped drafting add one token each)."""
        return sum(s.emitted for s in self.steps) / len(self.steps) if self.steps else 0.0

    @property
    def acceptance_rate(self) -> float:
        """Accepted / verified draft tokens."""
        verified = sum(s.verified for s in self.steps)
        return sum(s.accepted for s in self.steps) / verified if verified else 0.0

    @property
    def skipped_rounds(self) -> int:
        """Rounds whose policy skipped drafting (plain one-token steps)."""
        return sum(1 for s in self.steps if s.proposed == 0)

    @property
    def lookup_rounds(self) -> int:
        """Rounds that verified a prompt-lookup guess instead of drafting."""
        return sum(1 for s in self.steps if s.source == "lookup")

    def summary(self) -> str:
        skipped, lookups = self.skipped_rounds, self.lookup_rounds
        rounds = (f"{len(self.steps) - skipped - lookups} drafting rounds" + (f", {lookups} prompt-lookup rounds" if lookups else "")
                  + (f", {skipped} steps without drafting" if skipped else ""))
        return (
            f"{self.new_tokens} new tokens in {self.target_forwards} target forwards "
            f"({rounds}): tau {self.tau:.2f} tokens/round, "
            f"acceptance {self.acceptance_rate:.1%} of verified draft tokens"
        )

    def to_dict(self) -> dict:
        return {"prefill_tokens": self.prefill_tokens, "tau": self.tau, "steps": [s.to_dict() for s in self.steps]}
