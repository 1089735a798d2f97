"""The hardware-aware prefix scheduler (DSpark paper, Algorithm 1), as a pure function over R requests.

Each request ``r`` has drafted a block with per-slot survival probabilities ``c_{r,1..gamma}`` (slot
``j`` is accepted given slots before it were); ``a_{r,j} = prod_{i<=j} c_{r,i}`` is the probability
that its first ``j`` drafted tokens are all accepted, so verifying ``l_r`` slots yields
``1 + sum_{j<=l_r} a_{r,j}`` expected tokens (the ``1`` is the target's own correction or bonus
token). One verification forward over ``B = R + sum_r l_r`` tokens takes ``1 / SPS(B)`` seconds.

The scheduler admits ``(r, j)`` pairs in descending ``a_{r,j}``, one token at a time, while the expected
throughput ``theta = tau / step_seconds(B)`` keeps rising, and STOPS at the first pair that does not
raise it. The stop is what keeps speculative sampling lossless: ``c_{r,j}`` depends on the drafted
tokens before slot ``j`` only, so a scheduler that stops at the first drop decides on ``x_{r,j}``
without having looked at ``x_{r,j}``. Searching on past the drop (``global_search=True``) lets later
confidences, which depend on ``x_{r,j}``, decide whether ``x_{r,j}`` is verified; that biases the output
(paper, appendix A: a (0.7, 0.3) target becomes (0.85, 0.15)). ``global_search`` is therefore only
for confidences that cannot see the current block (the paper's production variant sizes the batch
from confidences two steps old; the batched engine's choice of which requests draft), for greedy
acceptance, whose output is the target's whatever is verified (the batched engine's greedy steps), and
for the test that demonstrates the bias.

Cost curves need not rise with ``B``: on this project's CPU a float32 forward of 4 rows runs faster
than one of 3 (weight-major linears, :mod:`dspark_hf.integration.weight_major`). A forward that
verifies ``B > R`` tokens can always carry more of the drafted slots, up to ``R + sum_r l_r^max``, so the
step's cost at ``B`` is taken as the cheapest measured forward of ``B`` or more tokens (the curve's lower
envelope from the right). With a flat stretch, admission runs on through it and the step lands on the
cheap count. A step that verifies nothing (``B = R``) keeps its own cost: it has no slot to add. The
envelope depends on the curve and the caps only, never on drafted tokens, so the stop stays token-blind.

Curves with bumps (``convex=True``, the batched engine's planning): a measured curve that rises and falls
above its trend (timing noise, a kernel switch at one count) stops admission at the first rise even
when a much longer verification pays, as the H200 run of 2026-12-04 and this CPU's tiny-model traces showed
(verifying 1-2 slots per request where all 7 ran 40 % faster). With step costs on the lower convex hull
of the envelope, plus a constant (drafting, the engine's own work), and ``tau`` concave in the admitted
pairs (``a`` sorted descending), throughput is quasi-concave along the admission order, so the first drop
is the best prefix: the early stop keeps its token-blind lossless property and no longer ends at a bump.
The hull prices counts between its vertices below their measurement; the stop can land there.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

StepsPerSecond = Callable[[int], float]


def cumulative_survival(confidences: Sequence[float] | torch.Tensor) -> list[float]:
    """``a_j = prod_{i<=j} c_i`` for one block, as Python floats."""
    out, running = [], 1.0
    for c in (confidences.tolist() if isinstance(confidences, torch.Tensor) else confidences):
        running *= float(c)
        out.append(running)
    return out


def expected_tokens(confidences: Sequence[float] | torch.Tensor, length: int) -> float:
    """Expected tokens a round adds when the first ``length`` drafted slots are verified."""
    return 1.0 + sum(cumulative_survival(confidences)[:length])


def schedule_prefixes(
    confidences: Sequence[Sequence[float]] | torch.Tensor,
    steps_per_second: StepsPerSecond,
    *,
    draft_seconds: float = 0.0,
    max_lengths: Sequence[int] | None = None,
    global_search: bool = False,
    convex: bool = False,
) -> list[int]:
    """Verification lengths ``[l_1 .. l_R]`` maximising expected tokens per second.

    Args:
        confidences: ``R`` rows of per-slot survival probabilities ``c_{r,j}`` (a ``[R, gamma]`` tensor or
            nested sequences; rows may differ in length).
        steps_per_second: ``SPS(B)``, the target's verification forwards per second at ``B`` tokens per
            forward (e.g. :meth:`CostProfile.steps_per_second`).
        draft_seconds: the draft's cost of one round, added to every step's time (0 = the paper's
            formula, which counts target time only).
        max_lengths: optional per-request caps (e.g. tokens left before ``max_length``).
        global_search: keep scanning past the first pair that lowers throughput and return the best
            prefix of the admission order. Lossy for confidences computed from the current block; see
            the module docstring.
        convex: cost verifications (``B > R``) on the lower convex hull of the envelope (module
            docstring, "Curves with bumps"): the first drop is then the best prefix, still token-blind.

    Returns:
        ``l_r`` per request, ``0 <= l_r <= len(confidences[r])``; for ``R = 1`` this is the batch-1 policy.
    """
    rows = [cumulative_survival(row) for row in (confidences.tolist() if isinstance(confidences, torch.Tensor) else confidences)]
    requests = len(rows)
    if requests == 0:
        return []
    caps = [len(row) for row in rows] if max_lengths is None else [min(len(row), max(0, int(m))) for row, m in zip(rows, max_lengths)]
    # Admission order: descending a_{r,j}; ties keep slot order (a_{r,j} never rises with j, so every
    # request's admitted slots stay a prefix).
    pairs = sorted(((a, r, j) for r, row in enumerate(rows) for j, a in enumerate(row[: caps[r]], start=1)), key=lambda p: (-p[0], p[2], p[1]))

    seconds = step_seconds_curve(steps_per_second, requests, requests + sum(caps), convex=convex)

    def throughput(tau: float, tokens: int) -> float:
        step = seconds[tokens - requests]
        return tau / (step + draft_seconds) if step < float("inf") else 0.0

    lengths = [0] * requests
    tokens, tau = requests, float(requests)
    best = throughput(tau, tokens)
    best_lengths = list(lengths)
    for a, r, j in pairs:
        tokens += 1
        tau += a
        lengths[r] = j
        theta = throughput(tau, tokens)
        if theta > best:
            best, best_lengths = theta, list(lengths)
        elif not global_search:
            break
    return best_lengths


def lower_convex_hull(values: Sequence[float]) -> list[float]:
    """The greatest convex function at or below ``values`` (points ``(i, values[i])``), at every ``i``:
    the lower hull's vertices are kept and the points between them are read off its segments. Infinite
    values (no measurement) stay infinite and are left out of the hull."""
    finite = [(i, float(v)) for i, v in enumerate(values) if v < float("inf")]
    hull: list[tuple[int, float]] = []
    for point in finite:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (point[0] - x1) >= (point[1] - y1) * (x2 - x1):  # hull[-1] on or above the chord
                hull.pop()
            else:
                break
        hull.append(point)
    out = [float(v) for v in values]
    for (x1, y1), (x2, y2) in zip(hull, hull[1:]):
        for i in range(x1 + 1, x2):
            if out[i] < float("inf"):
                out[i] = y1 + (y2 - y1) * (i - x1) / (x2 - x1)
    return out


def step_seconds_curve(steps_per_second: StepsPerSecond, requests: int, most: int, convex: bool = False) -> list[float]:
    """What :func:`schedule_prefixes` takes a step of ``B = requests .. most`` tokens to cost (index
    ``B - requests``): the envelope (:func:`_step_seconds_envelope`), on its lower convex hull for
    ``B > requests`` when ``convex``."""
    seconds = _step_seconds_envelope(steps_per_second, requests, most)
    return seconds[:1] + lower_convex_hull(seconds[1:]) if convex else seconds


def _step_seconds_envelope(steps_per_second: StepsPerSecond, requests: int, most: int) -> list[float]:
    """Seconds of a step of ``B = requests .. most`` tokens: ``1 / SPS(B)``, and for ``B > requests`` the
    cheapest of the forwards of ``B .. most`` tokens (a verification can carry more slots; module docstring)."""
    seconds = []
    for tokens in range(requests, most + 1):
        sps = float(steps_per_second(tokens))
        seconds.append(1.0 / sps if sps > 0 else float("inf"))
    for i in range(len(seconds) - 2, 0, -1):
        seconds[i] = min(seconds[i], seconds[i + 1])
    return seconds
