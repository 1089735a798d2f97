"""Losslessness of the schedulers.

1. The paper's appendix A case, by Monte-Carlo over the exact verification rule: target
   p = (0.7, 0.3) over tokens {A, B} at the first drafted slot, draft q = (0.5, 0.5), c_1 = 0.5, and
   c_2 (which depends on x_1) = 0.95 after A, 0.05 after B. With SPS = (1, 0.6, 0.55) for B = 1, 2, 3,
   a scheduler that searches past the first drop verifies x_1 only when x_1 = A, which turns the
   output into (0.85, 0.15); ours stops at the first drop and keeps (0.7, 0.3). N = 40,000 rounds per
   case: the standard error of a frequency is at most 0.0025; the bound is 0.0125 (5 standard errors).
2. End to end: speculative sampling under the hardware-aware policy (a synthetic cost curve that
   makes it verify 0 to all slots depending on the confidences) draws the first three tokens from the
   target's exact joint distribution (chi-square below the 1 - 1e-4 quantile, 1,500 generations,
   the same tiny pair and test as tests/test_sampling_distribution.py).
"""

from __future__ import annotations

import random

import pytest
import torch

from dspark_hf.verification.scheduling import CostProfile, schedule_prefixes
from dspark_hf.verification.policies import HardwareAware, OnlineAcceptance

P_TARGET = {"A": 0.7, "B": 0.3}
Q_DRAFT = {"A": 0.5, "B": 0.5}
SPS = {1: 1.0, 2: 0.6, 3: 0.55}
ROUNDS = 40_000
BOUND = 0.0125


def first_token(length: int, x1: str, rng: random.Random) -> str:
    """The token the round commits at the first drafted position (standard speculative sampling)."""
    if length == 0:
        return "A" if rng.random() < P_TARGET["A"] else "B"
    if rng.random() < min(1.0, P_TARGET[x1] / Q_DRAFT[x1]):
        return x1
    residual = {t: max(P_TARGET[t] - Q_DRAFT[t], 0.0) for t in P_TARGET}
    return "A" if rng.random() < residual["A"] / sum(residual.values()) else "B"


def frequency_of_a(global_search: bool, c1_choices=(0.5,), seed=0) -> tuple[float, set[int]]:
    rng = random.Random(seed)
    hits, lengths = 0, set()
    for _ in range(ROUNDS):
        c1 = rng.choice(c1_choices)  # known before x_1 is drawn
        x1 = "A" if rng.random() < Q_DRAFT["A"] else "B"
        c2 = 0.95 if x1 == "A" else 0.05
        length = schedule_prefixes([[c1, c2]], SPS.__getitem__, global_search=global_search)[0]
        lengths.add(length)
        hits += first_token(length, x1, rng) == "A"
    return hits / ROUNDS, lengths


def test_searching_past_the_first_drop_biases_the_output():
    freq, lengths = frequency_of_a(global_search=True)
    assert lengths == {0, 2}
    assert abs(freq - 0.85) < BOUND, f"expected about 0.85, got {freq:.4f}"


def test_stopping_at_the_first_drop_keeps_the_target_distribution():
    freq, lengths = frequency_of_a(global_search=False)
    assert lengths == {0}
    assert abs(freq - 0.7) < BOUND, f"expected 0.7, got {freq:.4f}"


def test_stopping_at_the_first_drop_is_lossless_when_it_verifies_too():
    # c_1 is 0.5 or 0.9 (independent of x_1): ours then verifies 0, 1 or 2 slots, and the choice
    # between 1 and 2 depends on x_1 through c_2 -- but only after x_1 was already admitted.
    freq, lengths = frequency_of_a(global_search=False, c1_choices=(0.5, 0.9), seed=1)
    assert lengths == {0, 1, 2}
    assert abs(freq - 0.7) < BOUND, f"expected 0.7, got {freq:.4f}"
    biased, _ = frequency_of_a(global_search=True, c1_choices=(0.5, 0.9), seed=1)
    assert biased - 0.7 > 4 * BOUND  # the negative control still detects the bias here (about 0.775)


# -- end to end ----------------------------------------------------------------------------------

def synthetic_profile() -> CostProfile:
    """Verification costs 1 + 0.35 (B - 1) time units: verifying slot j pays when a_j is above about
    a third of the expected tokens so far, so L varies with the confidences."""
    tokens = list(range(1, 9))
    return CostProfile(model="tiny", device="test", dtype="float32", tokens=tokens, target_seconds=[1 + 0.35 * (b - 1) for b in tokens])


@pytest.fixture(scope="module")
def sampling_case():
    from test_sampling_distribution import build_pair, exact_joint

    target, draft = build_pair()
    joint = exact_joint(target)
    return target, draft, joint


@pytest.mark.parametrize("policy_cls", [HardwareAware, OnlineAcceptance])
def test_hardware_aware_sampling_matches_target_distribution(sampling_case, policy_cls):
    from test_sampling_distribution import chi_square, chi_square_quantile, sample_counts

    target, draft, joint = sampling_case
    policy = policy_cls(profile=synthetic_profile())
    policy.observe = lambda record, _observe=policy.observe: (_observe(record), lengths.append(record.verified))
    lengths: list[int] = []
    torch.manual_seed(11)
    stat, df = chi_square(sample_counts(target, draft, policy), joint, 1500)
    assert len(set(lengths)) >= 2, f"the scheduler always verified {set(lengths)}: the test would not exercise it"
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"
