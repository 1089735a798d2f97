"""Losslessness of the schedulers.

1. The paper's appendix A case, by Monte-Carlo over the exact verification rule: target
   p = (0.7, 0.3) over tokens {A, B} at the first drafted slot, draft q = (0.5, 0.5), c_1 = 0.5, and
   c_2 (which depends on x_1) = 0.95 after A, 0.05 after B. With SPS = (1, 0.6, 0.55) for B = 1, 2, 3,
   a scheduler that searches past the first drop verifies x_1 only when x_1 = A, which turns the
   output into (0.85, 0.15); ours stops at the first drop and keeps (0.7, 0.3). N = 40,000 rounds per
   case: the standard error of a frequency is at most 0.0025; the bound is 0.0125 (5 standard errors).
2. End to end, through ``target.generate(..., assistant_model=draft, do_sample=True)``: the same case
   built into the tiny pair of tests/test_sampling_distribution.py. The draft's confidence head is set
   by hand so that ``c_k`` depends on the previous token only, and strongly: 0.95 after token 2
   ("good"), 0.5 after any other token. The cost profile is appendix A's (SPS 1, 0.6, 0.55, 0.5 for
   B = 1..4). After a good anchor the stopping scheduler verifies, after any other anchor it verifies
   nothing (asserted, so its lengths vary with the confidences); a scheduler searching past the first
   drop also verifies after a 0.5-anchor, but only when the drafted x_1 is the good token, i.e. it lets
   x_1 decide whether x_1 is verified. The first three tokens, sampled at temperature 1 (whole
   distributions, so the draft's x_1 is the good token often but not always), are compared with the
   target's exact joint distribution (Pearson chi-square below the 1 - 1e-4 quantile, 2,000
   generations, helpers of tests/test_sampling_distribution.py).

   Measured (df = 130, bound 198.8): ``HardwareAware`` (stops at the first drop) chi2 = 148.4,
   ``OnlineAcceptance`` 129.0. Code change that makes
   ``test_hardware_aware_sampling_matches_target_distribution[HardwareAware]`` fail (applied to
   ``HardwareAware.verify_length`` in ``src/dspark_hf/verification/policies.py``, run, reverted):
   ``schedule_prefixes(..., draft_seconds=self.round_seconds, global_search=True)``: chi2 = 334.5.
   (``OnlineAcceptance`` is unaffected by that change, 129.0: its estimates never see the current
   block, so searching on is lossless there.) ``test_searching_past_the_first_drop_is_rejected_end_to_end``
   makes the same change by monkeypatching ``schedule_prefixes`` (same statistic) and asserts that the
   chi-square test rejects it.
"""

from __future__ import annotations

import functools
import math
import random

import pytest
import torch

from dspark_hf.verification.scheduling import CostProfile, prefix_scheduler, schedule_prefixes
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

GOOD_TOKEN, GOOD_C, OTHER_C = 2, 0.95, 0.5
E2E_SAMPLES = 2000


def appendix_a_profile() -> CostProfile:
    """SPS(B) = 1, 0.6, 0.55, 0.5 for B = 1..4 (time units): verifying one slot pays only when its
    confidence is above 2/3, but two slots of confidences (0.5, 0.95) together would pay."""
    tokens = [1, 2, 3, 4]
    return CostProfile(model="tiny", device="test", dtype="float32", tokens=tokens, target_seconds=[1 / s for s in (1.0, 0.6, 0.55, 0.5)])


def e2e_sampling():
    from test_sampling_distribution import Sampling

    return Sampling(temperature=1.0, top_k=None, top_p=1.0, new_tokens=3)


def build_case():
    """The tiny pair of tests/test_sampling_distribution.py with confidences set by hand, and the
    target's exact joint distribution of the first new tokens."""
    from test_sampling_distribution import VOCAB, build_pair, exact_joint

    target, draft = build_pair()
    logit = lambda c: math.log(c / (1 - c))  # noqa: E731
    with torch.no_grad():
        # c_k = sigmoid(w[prev_k]): the confidence head reads only the one-hot markov embedding of prev_k.
        weights = torch.full((VOCAB,), logit(OTHER_C))
        weights[GOOD_TOKEN] = logit(GOOD_C)
        draft.confidence_head.proj.weight.zero_()
        draft.confidence_head.proj.weight[0, -VOCAB:] = weights
        draft.confidence_head.proj.bias.zero_()
    return target, draft, exact_joint(target, e2e_sampling())


@pytest.fixture(scope="module")
def sampling_case():
    return build_case()


def run_scheduled(target, draft, policy):
    """Sample E2E_SAMPLES generations under ``policy``; returns the counts, the verification stats and
    every round's ``(c_1, verified)``."""
    from test_sampling_distribution import sample_counts

    rounds: list[tuple[float, int]] = []
    policy.observe = lambda record, _observe=policy.observe: (_observe(record), rounds.append((record.confidences[0], record.verified)))
    torch.manual_seed(11)
    counts, stats = sample_counts(target, draft, policy, samples=E2E_SAMPLES, sampling=e2e_sampling())
    return counts, stats, rounds


@pytest.mark.parametrize("policy_cls", [HardwareAware, OnlineAcceptance])
def test_hardware_aware_sampling_matches_target_distribution(sampling_case, policy_cls):
    from test_sampling_distribution import chi_square, chi_square_quantile

    target, draft, joint = sampling_case
    counts, stats, rounds = run_scheduled(target, draft, policy_cls(profile=appendix_a_profile()))
    stat, df = chi_square(counts, joint, E2E_SAMPLES)
    print(f"{policy_cls.__name__}: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats}")
    lengths = {verified for _, verified in rounds}
    assert len(lengths) >= 2, f"the scheduler always verified {lengths}: the test would not exercise it"
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"
    if policy_cls is HardwareAware:
        # Stopping at the first drop: a 0.5-confidence first slot is never verified, a 0.95 one is.
        assert all(verified == 0 for c1, verified in rounds if c1 < 0.6)
        assert any(verified > 0 for c1, verified in rounds if c1 > 0.9)


def test_searching_past_the_first_drop_is_rejected_end_to_end(sampling_case, monkeypatch):
    """Negative control: the hardware-aware policy with ``global_search=True`` (appendix A's biased
    scheduler) must fail the same distribution test."""
    from test_sampling_distribution import chi_square, chi_square_quantile, patch_everywhere

    target, draft, joint = sampling_case
    original = prefix_scheduler.schedule_prefixes
    patch_everywhere(monkeypatch, original, functools.partial(original, global_search=True))
    counts, stats, rounds = run_scheduled(target, draft, HardwareAware(profile=appendix_a_profile()))
    stat, df = chi_square(counts, joint, E2E_SAMPLES)
    print(f"HardwareAware(global_search=True): chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats}")
    # The search past the drop does verify after a 0.5-confidence first slot (when x_1 is the good token).
    assert any(verified > 0 for c1, verified in rounds if c1 < 0.6)
    assert stat > chi_square_quantile(df), f"the global-search bias went undetected: chi2={stat:.1f}, df={df}"
