"""Benchmark metrics, as pure functions of per-round records and timings.

Round records are :class:`dspark_hf.telemetry.StepRecord` (DSpark's own telemetry, or the counts
:mod:`.rounds` takes from transformers' candidate generators). Definitions (``docs/benchmarks.md``):

- ``tau``: tokens added per verification round, the target's own (bonus or correction) token
  included: ``sum(emitted) / rounds``. Plain decoding has 1.
- ``per_slot_acceptance[k-1]``: of the rounds that verified slot ``k``, the fraction in which slots
  ``1..k`` were all accepted (``accepted >= k``): the survival rate at depth ``k``.
- ``per_slot_conditional[k-1]``: of the rounds that verified slot ``k`` and accepted slots ``1..k-1``,
  the fraction that accepted slot ``k`` too.
- ``verified_ratio``: verified / drafted tokens (1 for whole-block verification).
- ``acceptance_rate``: accepted / verified tokens.
- spreads: median and quartiles (``statistics.quantiles``, inclusive method), min and max.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

import torch

from dspark_hf.telemetry import StepRecord


def round_counts(steps: Sequence[StepRecord]) -> dict:
    """Totals over rounds: ``rounds``, ``drafted``, ``verified``, ``accepted``, ``emitted``."""
    return {
        "rounds": len(steps),
        "drafted": sum(s.proposed for s in steps),
        "verified": sum(s.verified for s in steps),
        "accepted": sum(s.accepted for s in steps),
        "emitted": sum(s.emitted for s in steps),
    }


def drafting_round_seconds(steps: Sequence[StepRecord]) -> float | None:
    """Median ``draft_seconds`` of the rounds that drafted (``source == "draft"``); lookup rounds and plain
    steps draft nothing and are left out. ``None`` without such rounds."""
    seconds = [s.draft_seconds for s in steps if s.source == "draft"]
    return statistics.median(seconds) if seconds else None


def decode_step_seconds(calls: Iterable[tuple[int, float, float | None]]) -> float | None:
    """Seconds per token after the first over calls ``(new_tokens, seconds, first_token_seconds)``:
    ``sum(seconds - first_token_seconds) / sum(new_tokens - 1)`` (the prefill and first token left out); calls
    without a first-token time or with fewer than two new tokens are skipped. ``None`` when none is left."""
    tokens = seconds = 0.0
    for new_tokens, total, first in calls:
        if first is None or new_tokens < 2:
            continue
        tokens += new_tokens - 1
        seconds += total - first
    return seconds / tokens if tokens else None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def tau(steps: Sequence[StepRecord]) -> float | None:
    """Tokens per verification round, bonus token included; ``None`` without rounds."""
    return _ratio(sum(s.emitted for s in steps), len(steps))


def verified_ratio(steps: Sequence[StepRecord]) -> float | None:
    return _ratio(sum(s.verified for s in steps), sum(s.proposed for s in steps))


def acceptance_rate(steps: Sequence[StepRecord]) -> float | None:
    return _ratio(sum(s.accepted for s in steps), sum(s.verified for s in steps))


def slot_depth(steps: Sequence[StepRecord]) -> int:
    """The deepest slot any round verified."""
    return max((s.verified for s in steps), default=0)


def per_slot_acceptance(steps: Sequence[StepRecord], depth: int | None = None) -> list[float | None]:
    """Survival rate per slot ``k = 1..depth``: ``#(accepted >= k) / #(verified >= k)``."""
    depth = slot_depth(steps) if depth is None else depth
    return [_ratio(sum(s.accepted >= k for s in steps), sum(s.verified >= k for s in steps)) for k in range(1, depth + 1)]


def per_slot_conditional(steps: Sequence[StepRecord], depth: int | None = None) -> list[float | None]:
    """Per slot: ``#(accepted >= k) / #(verified >= k and accepted >= k - 1)``."""
    depth = slot_depth(steps) if depth is None else depth
    return [
        _ratio(sum(s.accepted >= k for s in steps), sum(s.verified >= k and s.accepted >= k - 1 for s in steps))
        for k in range(1, depth + 1)
    ]


def spread(values: Iterable[float]) -> dict | None:
    """``{"median", "q25", "q75", "min", "max", "n"}`` of the finite values; ``None`` when there are none."""
    data = sorted(v for v in values if v is not None and math.isfinite(v))
    if not data:
        return None
    q25, _, q75 = statistics.quantiles(data, n=4, method="inclusive") if len(data) > 1 else (data[0],) * 3
    return {"median": statistics.median(data), "q25": q25, "q75": q75, "min": data[0], "max": data[-1], "n": len(data)}


def tokens_per_second(tokens: int, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 else None


def paired_speedups(method: Sequence[tuple[int, float]], plain: Sequence[tuple[int, float]]) -> list[float]:
    """Per-prompt speed-up: the method's tokens/s over plain generation's on the same prompt, from
    ``(new_tokens, seconds)`` pairs in prompt order. With greedy decoding both produce the same tokens,
    so this is plain seconds / method seconds."""
    if len(method) != len(plain):
        raise ValueError("speed-ups need the same prompts for the method and plain generation")
    out = []
    for (tm, sm), (tp, sp) in zip(method, plain):
        if sm > 0 and sp > 0 and tp > 0:
            out.append((tm / sm) / (tp / sp))
    return out


def aggregate_speedup(method: Sequence[tuple[int, float]], plain: Sequence[tuple[int, float]]) -> float | None:
    """Total tokens / total seconds of the method over the same for plain generation."""
    tm, sm = sum(t for t, _ in method), sum(s for _, s in method)
    tp, sp = sum(t for t, _ in plain), sum(s for _, s in plain)
    if sm <= 0 or sp <= 0 or tp <= 0:
        return None
    return (tm / sm) / (tp / sp)


def calibration(steps: Sequence[StepRecord], temperatures=None, bins: int = 15) -> dict | None:
    """ECE, AUROC and Brier of the survival predictions ``a_k = prod_{i<=k} c_i`` against the observed
    outcomes (``y_k = accepted >= k``, known where slot ``k`` was verified), pooled over slots and per
    slot; ``None`` when no round carries confidences. With ``temperatures`` (the draft's stored STS
    temperatures) the confidences are tempered first, as the survival and hardware policies read them.
    Built on :mod:`dspark_hf.verification.calibration`."""
    from dspark_hf.verification.calibration.metrics import summary
    from dspark_hf.verification.calibration.report import per_slot_metrics
    from dspark_hf.verification.calibration.sts import outcomes, survival_predictions
    from dspark_hf.verification.calibration.temperatures import logit

    rows = [s for s in steps if s.confidences]
    if not rows:
        return None
    gamma = min(len(s.confidences) for s in rows)
    logits = logit(torch.tensor([s.confidences[:gamma] for s in rows], dtype=torch.float64))
    verified = torch.tensor([min(s.verified, gamma) for s in rows])
    accepted = torch.tensor([min(s.accepted, gamma) for s in rows])
    temps = list(temperatures)[:gamma] + [1.0] * max(0, gamma - len(list(temperatures))) if temperatures else [1.0] * gamma
    y, known = outcomes(verified, accepted, gamma)
    a = survival_predictions(logits, temps)
    pooled = summary(a[known], y[known], bins)
    return {
        "temperatures": temps if temperatures else None,
        "bins": bins,
        **{k: _finite_or_none(v) for k, v in pooled.items()},
        "per_slot": [{k: _finite_or_none(v) for k, v in row.items()} for row in per_slot_metrics(logits, verified, accepted, temps, bins)],
    }


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
