"""Token provenance: how each generated token was produced, round by round.

A round (one :class:`~dspark_hf.telemetry.StepRecord`) adds ``emitted`` tokens: the first
``accepted`` are the draft's tokens that the target accepted (``"draft"``; ``"lookup"`` in a round that
verified a prompt-lookup guess instead of drafted tokens, ``record.source == "lookup"``), and the last one (``emitted ==
accepted + 1``) is the target's own token, which is

- a ``"correction"`` when the target rejected a verified draft token (``accepted < verified``) and put
  its own token in its place,
- a ``"bonus"`` when the target accepted every verified draft token (``accepted == verified > 0``) and
  added the next token from the same forward,
- a ``"target"`` token when the round verified nothing (``verified == 0``), as plain decoding would.

The token the target draws from the prompt, before the first round, is a ``"target"`` token of the
prefill (``step = None``); tokens of plain generation (no draft) are ``"plain"``. Like the telemetry, a round that stops at an end-of-sequence token counts
that last token as the target's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dspark_hf.telemetry import StepRecord

DRAFT, CORRECTION, BONUS, TARGET = "draft", "correction", "bonus", "target"
LOOKUP = "lookup"  # a guessed token copied from earlier in the sequence (a lookup round), accepted by the target
PLAIN = "plain"  # a token of plain generation (no draft at all)
KINDS = (DRAFT, LOOKUP, CORRECTION, BONUS, TARGET, PLAIN)


def step_origins(record: StepRecord) -> list[str]:
    """The kind of each of the round's ``record.emitted`` tokens, in order."""
    accepted = min(record.accepted, record.emitted)
    kinds = [LOOKUP if record.source == "lookup" else DRAFT] * accepted
    if record.emitted > accepted:
        if record.verified == 0:
            own = TARGET
        elif record.accepted < record.verified:
            own = CORRECTION
        else:
            own = BONUS
        kinds += [own] * (record.emitted - accepted)
    return kinds


@dataclass
class StepTokens:
    """The tokens one round (or the prefill, ``step is None``) added, their kinds, the round's record
    (``None`` for the prefill and for plain generation) and when they arrived (seconds since the call
    started)."""

    step: int | None
    token_ids: list[int]
    kinds: list[str]
    record: StepRecord | None = None
    elapsed: float = 0.0


class PieceDecoder:
    """Splits decoded text into one piece per token, so that the pieces concatenate to the decoded text.

    Each new token's piece is what decoding the whole sequence so far adds to the previous text. A
    token that ends inside a multi-byte character gets an empty piece; the token that completes the
    character carries it. Special tokens (skipped in the text) get empty pieces.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def add(self, token_ids: list[int]) -> list[str]:
        pieces = []
        for token in token_ids:
            self.ids.append(int(token))
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                pieces.append("")  # an incomplete character: wait for the token that completes it
                continue
            if not text.startswith(self.text):  # the tokenizer rewrote earlier text: keep only what is new
                keep = 0
                while keep < min(len(text), len(self.text)) and text[keep] == self.text[keep]:
                    keep += 1
                pieces.append(text[keep:])
            else:
                pieces.append(text[len(self.text):])
            self.text = text
        return pieces


@dataclass
class Transcript:
    """Everything one run produced so far: the rounds, each token's text piece, and totals."""

    tokenizer: object
    steps: list[StepTokens] = field(default_factory=list)
    pieces: list[list[str]] = field(default_factory=list)
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        self._decoder = PieceDecoder(self.tokenizer)
        self._special = set(getattr(self.tokenizer, "all_special_ids", []) or [])

    def add(self, step: StepTokens) -> None:
        self.steps.append(step)
        self.pieces.append(self._decoder.add(step.token_ids))
        self.elapsed = max(self.elapsed, step.elapsed)

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special

    @property
    def token_ids(self) -> list[int]:
        return list(self._decoder.ids)

    @property
    def text(self) -> str:
        return self._decoder.text

    @property
    def records(self) -> list[StepRecord]:
        return [s.record for s in self.steps if s.record is not None]

    @property
    def num_tokens(self) -> int:
        return len(self._decoder.ids)

    @property
    def tau(self) -> float:
        """Tokens added per drafting round (accepted + the target's own), as the telemetry counts it."""
        records = self.records
        return sum(r.emitted for r in records) / len(records) if records else 0.0

    @property
    def acceptance_rate(self) -> float:
        records = self.records
        verified = sum(r.verified for r in records)
        return sum(r.accepted for r in records) / verified if verified else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.num_tokens / self.elapsed if self.elapsed > 0 else 0.0

    def kind_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for step in self.steps:
            for kind in step.kinds:
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def to_dict(self) -> dict:
        """Machine-readable summary: per round the telemetry counts and the token kinds, plus totals."""
        return {
            "tokens": self.num_tokens,
            "token_ids": self.token_ids,
            "text": self.text,
            "tau": self.tau,
            "acceptance_rate": self.acceptance_rate,
            "seconds": self.elapsed,
            "tokens_per_second": self.tokens_per_second,
            "prefill_tokens": sum(len(s.token_ids) for s in self.steps if s.step is None and PLAIN not in s.kinds),
            "steps": [
                {
                    "step": s.record.step,
                    "proposed": s.record.proposed,
                    "verified": s.record.verified,
                    "accepted": s.record.accepted,
                    "emitted": s.record.emitted,
                    "source": s.record.source,
                    "kinds": list(s.kinds),
                }
                for s in self.steps
                if s.record is not None
            ],
        }
