"""Telemetry of a speculative batch: one :class:`BatchStep` per packed forward, and each request's
own :class:`~dspark_hf.telemetry.GenerationTelemetry` (its drafting rounds as
:class:`~dspark_hf.telemetry.StepRecord`, the same records as at batch 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dspark_hf.telemetry import GenerationTelemetry, StepRecord


@dataclass
class BatchStep:
    """One packed target forward: ``batch_tokens`` query tokens in all (``verify_tokens`` of them
    ``[last, d_1 .. d_L]`` rows of the ``decoding`` requests that verified a drafted block or a guess,
    ``plain_tokens`` the one row of each decoding request that took a plain token, ``prefill_tokens`` prompt
    rows), and per verifying request its round's record (``rounds``: request id -> :class:`StepRecord`). ``drafted_requests``: how many
    requests drafted a block this step (the hardware-aware policy lets a request whose drafting is not
    expected to pay take a plain token instead); ``drafting_skipped``: no decoding request drafted or
    verified a drafted block, the step was a plain decoding step (in which requests may still have
    verified prompt-lookup guesses); ``lookup_requests``: how many requests verified a prompt-lookup
    guess (their rounds' ``source`` is ``"lookup"``)."""

    step: int
    batch_tokens: int
    verify_tokens: int
    prefill_tokens: int
    decoding: int
    draft_seconds: float
    step_seconds: float
    rounds: dict[str, StepRecord] = field(default_factory=dict)
    drafting_skipped: bool = False  # the hardware-aware policy expected a plain step to be faster
    drafted_requests: int = 0
    lookup_requests: int = 0
    plain_tokens: int = 0  # until 2026-12-07 (run aa) counted in prefill_tokens

    @property
    def proposed(self) -> int:
        return sum(r.proposed for r in self.rounds.values())

    @property
    def verified(self) -> int:
        return sum(r.verified for r in self.rounds.values())

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.rounds.values())

    def to_dict(self) -> dict:
        return asdict(self)


# A long-running manager keeps the telemetry of this many latest steps and finished requests, so
# that its memory stays bounded however many requests it serves.
KEEP = 4096


@dataclass
class BatchTelemetry:
    """The steps of one engine run and every request's telemetry (kept after the request finishes),
    the latest :data:`KEEP` of each."""

    steps: list[BatchStep] = field(default_factory=list)
    requests: dict[str, GenerationTelemetry] = field(default_factory=dict)
    keep: int = KEEP

    def add_step(self, step: BatchStep) -> None:
        self.steps.append(step)
        if len(self.steps) > self.keep:
            del self.steps[: len(self.steps) - self.keep]

    def add_request(self, request_id: str, telemetry: GenerationTelemetry) -> None:
        self.requests[request_id] = telemetry
        while len(self.requests) > self.keep:
            self.requests.pop(next(iter(self.requests)))

    @property
    def tau(self) -> float:
        """Mean tokens a round added (accepted + the target's own), over all requests' rounds (drafting and
        prompt-lookup rounds)."""
        rounds = [s for t in self.requests.values() for s in t.steps]
        return sum(s.emitted for s in rounds) / len(rounds) if rounds else 0.0

    @property
    def lookup_rounds(self) -> int:
        """Rounds, over all requests, that verified a prompt-lookup guess instead of a drafted block."""
        return sum(t.lookup_rounds for t in self.requests.values())

    def summary(self) -> str:
        rounds = [s for t in self.requests.values() for s in t.steps]
        verified = sum(s.verified for s in rounds)
        accepted = sum(s.accepted for s in rounds)
        lookups = self.lookup_rounds
        return (
            f"{len(self.requests)} requests, {len(self.steps)} packed forwards, {len(rounds) - lookups} drafting rounds"
            + (f", {lookups} prompt-lookup rounds" if lookups else "") + ": "
            f"tau {self.tau:.2f} tokens/round, acceptance {accepted / verified if verified else 0.0:.1%} of verified draft tokens"
        )
