"""Verification lengths for every decoding request of a step.

- Per-request policies (``whole``, ``fixed:L``, ``threshold:t``, ``survival:t`` or any
  :class:`~dspark_hf.verification.policies.VerificationPolicy`): each request's length is the policy's
  ``verify_length`` of its own confidences, as at batch 1.
- The hardware-aware policies (:class:`~dspark_hf.verification.policies.HardwareAware` and
  :class:`~dspark_hf.verification.policies.OnlineAcceptance`): one call of
  :func:`~dspark_hf.verification.scheduling.prefix_scheduler.schedule_prefixes` (Algorithm 1) over all
  requests' (calibrated or estimated) slot confidences, on the cost curve of the packed forward
  (``B = R + sum_r l_r`` tokens, ``R`` counting the decoding requests that take a plain step in the same
  forward). Sampling: with its early stop on the curve's lower convex hull, so the decision on slot ``j``
  never looks at the drafted token of slot ``j``. Greedy: the best prefix of the admission order on the
  measured curve (greedy output does not depend on what is verified; see :func:`plan_lengths`).

Before drafting, :func:`requests_to_draft` asks the same question of each request's previous block's
confidences with the drafting time counted, request by request: the requests whose drafting is not
expected to pay take a plain step this time, the others draft (the hardware-aware policies only; see
the processor). When no request drafts, the step is a plain decoding step.

Lookup rows (the hardware-aware policies with lookup rounds on, :func:`uses_lookup`): a decoding request that
does not draft this step may verify a prompt-lookup guess instead of taking a plain token. Its row in
Algorithm 1 is the policy's per-slot acceptance estimates for guesses of that n-gram size (learned from
finished lookup rounds, token-blind) over the guess's length, admitted in the same order and priced on the
same curve as drafted slots (``guesses`` of :func:`plan_lengths`); the drafting decision weighs a request's
drafted block against its guess rather than against a plain token (``base`` of :func:`requests_to_draft`).

Then every length is capped by the request's tokens left (``max_new_tokens``: a round adds up to
``L + 1`` tokens) and the step's lengths are cut, longest first, until the verification tokens fit
the packed forward's token budget. Both caps depend on counts only, never on drafted tokens, so they
keep sampling lossless.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from dspark_hf.verification.policies import HardwareAware, VerificationPolicy
from dspark_hf.verification.scheduling.prefix_scheduler import cumulative_survival, schedule_prefixes, step_seconds_curve


def is_batch_scheduled(policy: VerificationPolicy) -> bool:
    """Whether ``policy`` chooses lengths over the whole batch (Algorithm 1) rather than per request."""
    return isinstance(policy, HardwareAware) and policy.profile is not None


def uses_lookup(policy: VerificationPolicy) -> bool:
    """Whether the batch's requests may verify prompt-lookup guesses (a batch-scheduled policy whose lookup
    rounds are on: ``hardware`` / ``online`` with their gate, not ``no-lookup`` or ``always-draft``)."""
    return is_batch_scheduled(policy) and getattr(policy, "lookup_rounds", None) is not None and policy.lookup_tokens > 0


def guess_row(policy: VerificationPolicy, ngram: int, length: int) -> list[float]:
    """The per-slot acceptance estimates of a guess of ``length`` tokens matched on an ``ngram``-token
    suffix (:class:`~dspark_hf.verification.scheduling.lookup_rounds.LookupRounds`, finished lookup rounds
    only)."""
    return policy.lookup_rounds.estimator(ngram).estimates()[: max(0, int(length))]


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
    plain_requests: int = 0,
    overhead_seconds: float = 0.0,
    greedy: bool = False,
    guesses: Sequence[Sequence[float]] = (),
    guess_caps: Sequence[int] = (),
) -> list[int]:
    """Lengths ``l_r`` for requests with drafted-block ``confidences`` (``None`` without a confidence
    head), each at most ``caps[r]``, fitting ``token_budget`` tokens together with the
    ``plain_requests`` other decoding requests of the step (one row each, no candidates).
    ``steps_per_second``: the packed forward's ``SPS(B)`` for the hardware-aware policies (default: the
    policy's own profile); the plain requests' rows and tokens count in ``B`` and in the expected tokens,
    as they share the forward. ``draft_seconds`` (the step's drafting) and ``overhead_seconds`` (the
    engine's own work per step, :meth:`.speculation.Speculation.step_overhead`) are added to every
    candidate step's forward time: a step that costs more than its forward makes each verified slot
    relatively cheaper, so Algorithm 1 admits more.

    ``greedy`` (greedy acceptance, with or without logits processors): the best prefix of Algorithm 1's
    admission order priced on the measured curve (``global_search``): under greedy acceptance the output
    is the target's whatever is verified, so the stop need not be token-blind, and a step lands on a
    count the curve makes cheap rather than inside a bump. Sampling keeps the token-blind first-drop stop
    on the lower convex hull (:func:`~dspark_hf.verification.scheduling.prefix_scheduler.schedule_prefixes`),
    whose stop can land between hull vertices, where the measured step costs more than the hull says (on
    this CPU with two requests: 5 tokens priced 83 ms on the hull, 103 ms measured, against 74 ms for 4).

    ``guesses``: the rows of requests that verify a prompt-lookup guess this step (per-slot acceptance
    estimates, used as they are, each at most ``guess_caps[g]`` long: the guess's length and the request's
    tokens left); their lengths follow the drafted requests' in the result. Only batch-scheduled policies
    take guesses (a per-request policy gets ``0`` for each)."""
    caps = [max(0, min(int(c), block_size)) for c in caps]
    guesses = [[float(x) for x in row] for row in guesses]
    guess_caps = [max(0, min(int(c), len(row))) for c, row in zip(guess_caps, guesses)]
    plain = max(0, int(plain_requests))
    if is_batch_scheduled(policy):
        sps = steps_per_second or policy.profile.steps_per_second
        rows = _slot_rows(policy, confidences, block_size) + guesses + [[] for _ in range(plain)]
        lengths = schedule_prefixes(rows, sps, draft_seconds=draft_seconds + max(0.0, overhead_seconds),
                                    max_lengths=caps + guess_caps + [0] * plain, global_search=greedy,
                                    convex=not greedy)[: len(caps) + len(guesses)]
    else:
        lengths = [min(int(policy.verify_length(c, block_size)), cap) for c, cap in zip(confidences, caps)] + [0] * len(guesses)
    return fit_to_budget(lengths, token_budget - plain)


def _slot_rows(policy, confidences, block_size) -> list[list[float]]:
    rows = []
    for c in confidences:
        slot = policy.slot_confidences(c, block_size)
        rows.append([1.0] * block_size if slot is None else [float(x) for x in slot[:block_size]])
    return rows


def expected_gains(policy, confidences, block_size, steps_per_second, overhead_seconds: float = 0.0):
    """``(lengths, gains)`` of requests whose next blocks are expected to have ``confidences``: Algorithm 1's
    length ``l_r`` for each (the best prefix of its admission order on the measured curve ``steps_per_second``,
    ``overhead_seconds`` added to every step: these confidences are earlier blocks', blind to this step's tokens)
    and the expected accepted tokens ``g_r``, the cumulative survival summed over ``l_r`` slots."""
    return admitted_gains(_slot_rows(policy, confidences, block_size), steps_per_second, overhead_seconds)


def admitted_gains(rows: Sequence[Sequence[float]], steps_per_second, overhead_seconds: float = 0.0):
    """``(lengths, gains)`` of :func:`expected_gains` for rows of per-slot survival probabilities used as they
    are (no calibration): a prompt-lookup guess's acceptance estimates, an empty row for a plain token."""
    rows = [list(row) for row in rows]
    lengths = schedule_prefixes(rows, steps_per_second, draft_seconds=max(0.0, overhead_seconds), global_search=True)
    return lengths, [sum(cumulative_survival(row)[:length]) for row, length in zip(rows, lengths)]


def requests_to_draft(
    policy: VerificationPolicy,
    confidences: Sequence[torch.Tensor | None],
    block_size: int,
    steps_per_second: Callable[[int], float] | None,
    draft_seconds: float | Callable[[int], float],
    must_draft: Sequence[bool] | None = None,
    overhead_seconds: float = 0.0,
    plain_overhead_seconds: float | None = None,
    base: Sequence[Sequence[float]] | None = None,
) -> list[bool]:
    """Which of ``R`` decoding requests draft a block this step, decided before drafting from the
    confidences of each request's previous block (so token-blind for this step's blocks).

    Algorithm 1 over all ``R`` requests (the best prefix of its admission order on the measured curve:
    these confidences are the previous blocks', blind to this step's tokens) gives each its length ``l_r`` and expected accepted tokens
    ``g_r`` (its cumulative survival summed over ``l_r`` slots). Requests are taken in order of ``g_r``
    (those in ``must_draft``, or without known confidences, first), and the number ``k`` that drafts is
    the one with the highest expected throughput ``(R + sum g) / (1 / SPS(R + sum l) + t_draft(k))``,
    ``t_draft(k)`` the seconds of one batched drafting call for ``k`` requests (``draft_seconds``: a
    function of ``k``, or a per-request figure multiplied by ``k``),
    ``k = 0`` being a plain step of all ``R`` requests, ``R * SPS(R)``; the engine's own work per step is
    added to both: ``overhead_seconds`` to a drafting step, ``plain_overhead_seconds`` (default: the same)
    to the plain one. Every request drafts for per-request policies (no cost curve).

    ``base``: what each request does when it does not draft, a row of per-slot survival probabilities (a
    prompt-lookup guess's acceptance estimates; empty for a plain token, the default). The no-drafting
    option then verifies those rows (Algorithm 1 over them, :func:`admitted_gains`), requests are taken in
    order of what drafting adds over their base, ``g_r - b_r``, and a drafting request's base rows leave the
    step."""
    count = len(confidences)
    if not is_batch_scheduled(policy) or count == 0:
        return [True] * count
    forced = [bool(f) or c is None for f, c in zip(must_draft or [False] * count, confidences)]
    sps = steps_per_second or policy.profile.steps_per_second
    lengths, gains = expected_gains(policy, confidences, block_size, sps, overhead_seconds)
    base_lengths, base_gains = [0] * count, [0.0] * count
    if base is not None and any(len(row) for row in base):
        base_lengths, base_gains = admitted_gains(base, sps, plain_overhead_seconds if plain_overhead_seconds is not None else overhead_seconds)
    order = sorted(range(count), key=lambda r: (not forced[r], -(gains[r] - base_gains[r]), r))
    first = sum(forced)
    drafting = draft_seconds if callable(draft_seconds) else (lambda k: k * float(draft_seconds))
    overhead = max(0.0, overhead_seconds)
    plain_overhead = overhead if plain_overhead_seconds is None else max(0.0, plain_overhead_seconds)
    # the measured curve (its envelope from the right), up to the most tokens any choice verifies
    seconds = step_seconds_curve(sps, count, count + sum(max(a, b) for a, b in zip(lengths, base_lengths)))
    tokens, expected = count + sum(base_lengths), count + sum(base_gains)
    best_k, best = 0, expected / (seconds[tokens - count] + plain_overhead)
    if first > 0:
        best_k, best = first, -1.0
    for k, r in enumerate(order, start=1):
        tokens += lengths[r] - base_lengths[r]
        expected += gains[r] - base_gains[r]
        if k < first:
            continue
        throughput = expected / (seconds[tokens - count] + drafting(k) + overhead)
        if throughput > best:
            best_k, best = k, throughput
    chosen = set(order[:best_k])
    return [r in chosen for r in range(count)]


def observe_round(policy: VerificationPolicy, record, ngram: int = 0) -> None:
    """Give a finished round to the policy. Batch-scheduled policies learn their per-slot acceptance
    estimates from it; their per-round overhead is the engine's measured drafting time instead
    (a batch-1 round time means nothing in a packed step). A lookup round (``record.source == "lookup"``)
    goes to the policy's estimates for guesses of its ``ngram`` size only, never to the draft's."""
    if record.source == "lookup":
        if getattr(policy, "lookup_rounds", None) is not None and ngram > 0:
            policy.lookup_rounds.observe(ngram, record.verified, record.accepted)
        return
    if is_batch_scheduled(policy):
        if policy.estimator is not None:
            policy.estimator.observe(record)
        return
    policy.observe(record)
