"""Verification lengths for every decoding request of a step.

- Per-request policies (``whole``, ``fixed:L``, ``threshold:t``, ``survival:t`` or any
  :class:`~dspark_hf.verification.policies.VerificationPolicy`): each request's length is the policy's
  ``verify_length`` of its own confidences, as at batch 1.
- The hardware-aware policies (:class:`~dspark_hf.verification.policies.HardwareAware` and
  :class:`~dspark_hf.verification.policies.OnlineAcceptance`): one call of
  :func:`~dspark_hf.verification.scheduling.prefix_scheduler.schedule_prefixes` (Algorithm 1) over all
  requests' (calibrated or estimated) slot confidences, on the cost curve of the packed forward
  (``B = R + sum_r l_r`` tokens), with its early stop, so the decision on slot ``j`` never looks at the
  drafted token of slot ``j``.

Before drafting, :func:`drafting_pays` asks the same question of the previous blocks' confidences
with the drafting time counted: when a plain decoding step is expected to be faster, the step is
not drafted at all (the hardware-aware policies only; see the processor).

Then every length is capped by the request's tokens left (``max_new_tokens``: a round adds up to
``L + 1`` tokens) and the step's lengths are cut, longest first, until the verification tokens fit
the packed forward's token budget. Both caps depend on counts only, never on drafted tokens, so they
keep sampling lossless.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from dspark_hf.verification.policies import HardwareAware, VerificationPolicy
from dspark_hf.verification.scheduling.prefix_scheduler import cumulative_survival, schedule_prefixes


def is_batch_scheduled(policy: VerificationPolicy) -> bool:
    """Whether ``policy`` chooses lengths over the whole batch (Algorithm 1) rather than per request."""
    return isinstance(policy, HardwareAware) and policy.profile is not None


def fit_to_budget(lengths: list[int], budget: int) -> list[int]:
    """Cut the longest lengths one token at a time until ``len(lengths) + sum(lengths) <= budget``
    (or every length is 0)."""
    lengths = list(lengths)
    while lengths and len(lengths) + sum(lengths) > budget and max(lengths) > 0:
        longest = max(range(len(lengths)), key=lambda r: (lengths[r], r))
        lengths[longest] -= 1
    return lengths


def plan_lengths(
    policy: VerificationPolicy,
    confidences: Sequence[torch.Tensor | None],
    block_size: int,
    caps: Sequence[int],
    token_budget: int,
    steps_per_second: Callable[[int], float] | None = None,
    draft_seconds: float = 0.0,
) -> list[int]:
    """Lengths ``l_r`` for requests with drafted-block ``confidences`` (``None`` without a confidence
    head), each at most ``caps[r]``, fitting ``token_budget`` verification tokens.
    ``steps_per_second``: the packed forward's ``SPS(B)`` for the hardware-aware policies (default: the
    policy's own profile)."""
    caps = [max(0, min(int(c), block_size)) for c in caps]
    if is_batch_scheduled(policy):
        sps = steps_per_second or policy.profile.steps_per_second
        rows = []
        for c in confidences:
            slot = policy.slot_confidences(c, block_size)
            rows.append([1.0] * block_size if slot is None else [float(x) for x in slot[:block_size]])
        lengths = schedule_prefixes(rows, sps, draft_seconds=draft_seconds, max_lengths=caps)
    else:
        lengths = [min(int(policy.verify_length(c, block_size)), cap) for c, cap in zip(confidences, caps)]
    return fit_to_budget(lengths, token_budget)


def drafting_pays(
    policy: VerificationPolicy,
    confidences: Sequence[torch.Tensor | None],
    block_size: int,
    steps_per_second: Callable[[int], float] | None,
    draft_seconds: float,
) -> bool:
    """Whether drafting is expected to add tokens per second this step, decided before drafting from
    the confidences of each request's previous block (so token-blind for this step's blocks): the
    best expected throughput of Algorithm 1 with the drafting time included, ``tau / (1 / SPS(B) +
    t_draft)``, against a plain decoding step of the same requests, ``R * SPS(R)``. Always ``True``
    for per-request policies and while no confidences are known."""
    if not is_batch_scheduled(policy) or not confidences or any(c is None for c in confidences):
        return True
    sps = steps_per_second or policy.profile.steps_per_second
    rows = []
    for c in confidences:
        slot = policy.slot_confidences(c, block_size)
        rows.append([1.0] * block_size if slot is None else [float(x) for x in slot[:block_size]])
    lengths = schedule_prefixes(rows, sps, draft_seconds=draft_seconds)
    requests = len(rows)
    tokens = requests + sum(lengths)
    tau = requests + sum(sum(cumulative_survival(row)[:length]) for row, length in zip(rows, lengths))
    drafted = tau / (1.0 / max(sps(tokens), 1e-12) + draft_seconds)
    return drafted > requests * sps(requests)


def observe_round(policy: VerificationPolicy, record) -> None:
    """Give a finished round to the policy. Batch-scheduled policies learn their per-slot acceptance
    estimates from it; their per-round overhead is the engine's measured drafting time instead
    (a batch-1 round time means nothing in a packed step)."""
    if is_batch_scheduled(policy):
        if policy.estimator is not None:
            policy.estimator.observe(record)
        return
    policy.observe(record)
