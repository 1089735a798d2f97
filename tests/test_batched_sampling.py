"""Speculative sampling in a continuous batch draws from the target's own distribution.

The pair, settings and exact joint distribution of tests/test_sampling_distribution.py (temperature
0.6, top-k 3, top-p 0.8; a draft close to the target but not equal; 4 new tokens), now as ``SAMPLES``
= 1,000 requests of one ``generate_batch`` call, up to 16 verified together in each packed forward
(asserted: steps with at least 4 decoding requests). Pearson's chi-square against the exact joint
must stay below the 1 - 1e-4 quantile; acceptances, rejections with residual draws and verified
slot 1 after an accepted slot 0 all occur (asserted).

Negative control (``test_misreported_distribution_is_rejected_in_a_batch``): the draft draws as the
real code but reports a uniform distribution; the same test must reject it (measured chi2 2373).
Measured with the correct code: chi2 25.8 (``whole``) and 22.8 (``threshold:0.5``), df 22, bound 55.8,
16 requests per packed forward. Mutation run once: ``acceptance.verify_request`` drawing the token
after a rejection from the target's ``p`` instead of the residual ``max(0, p - q)`` (after
``_speculative_sampling``: ``if accepted < length: tokens[0, -1] = multinomial(softmax(rows[accepted]))``)
made ``test_batched_sampling_matches_target_distribution[whole]`` fail (chi2 460); reverted.
"""

from __future__ import annotations

import pytest
import torch

from batched_support import small_cache
from dspark_hf.drafting import block as block_module
from dspark_hf.drafting.block import DraftBlock
from test_sampling_distribution import (
    PROMPT, RAW, RESTRICTED, SAMPLES, VOCAB, Sampling, assert_marginals_match, assert_paths_exercised, build_pair, chi_square,
    chi_square_quantile, exact_joint, misreporting_draw_block, patch_everywhere, restricted_draft,
)


@pytest.fixture(scope="module")
def pair_and_joint():
    target, draft = build_pair()
    return target, draft, exact_joint(target)


def batched_counts(target, draft, policy, sampling: Sampling = Sampling()) -> tuple[dict, dict, int]:
    config = sampling.generation_config(policy)
    results = target.generate_batch(inputs=[PROMPT[0].tolist()] * SAMPLES, generation_config=config,
                                    continuous_batching_config=small_cache(num_blocks=96), assistant_model=draft)
    counts: dict[tuple[int, ...], int] = {}
    for r in results.values():
        assert r.error is None
        counts[tuple(r.generated_tokens)] = counts.get(tuple(r.generated_tokens), 0) + 1
    telemetry = draft.last_batch_telemetry
    rounds = [s for t in telemetry.requests.values() for s in t.steps]
    stats = {
        "accepted": sum(s.accepted for s in rounds),
        "rejected": sum(s.verified > s.accepted for s in rounds),
        "deep": sum(s.verified >= 2 and s.accepted >= 1 for s in rounds),
    }
    return counts, stats, max(s.decoding for s in telemetry.steps)


@pytest.mark.parametrize("policy", ["whole", "threshold:0.5"])
def test_batched_sampling_matches_target_distribution(pair_and_joint, policy):
    target, draft, joint = pair_and_joint
    torch.manual_seed(7)
    counts, stats, concurrent = batched_counts(target, draft, policy)
    stat, df = chi_square(counts, joint, SAMPLES)
    print(f"batched, policy {policy}: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats} concurrent={concurrent}")
    assert concurrent >= 4
    assert_paths_exercised(stats)
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"


def test_misreported_distribution_is_rejected_in_a_batch(pair_and_joint, monkeypatch):
    target, draft, joint = pair_and_joint
    patch_everywhere(monkeypatch, block_module.draw_block, misreporting_draw_block("uniform"))
    torch.manual_seed(7)
    counts, stats, _ = batched_counts(target, draft, "whole")
    stat, df = chi_square(counts, joint, SAMPLES)
    print(f"batched, misreporting uniform: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f}")
    assert stat > chi_square_quantile(df), f"misreporting went undetected: chi2={stat:.1f}"


@pytest.fixture(scope="module")
def raw_joint(pair_and_joint):
    target, draft, _ = pair_and_joint
    joint = exact_joint(target, RAW)
    assert abs(sum(joint.values()) - 1.0) < 1e-4
    return joint


def test_batched_raw_sampling_matches_target_distribution(pair_and_joint, raw_joint):
    """Sampling with no logits processor (temperature 1, no top-k / top-p): the draft's blocks are drawn
    for all requests at once per slot (``block.draw_blocks``'s batched path, row-wise multinomial), and the
    batch must still sample the target's own joint. Measured: chi2 12.1, df 16, bound 46.2 (16 requests
    per packed forward); the negative control below gives 181.0. Mutation run once: ``draw_blocks``
    reporting the base logits (no sequential-head bias) while drawing from the corrected ones: chi2 107.6,
    fails."""
    target, draft, _ = pair_and_joint
    torch.manual_seed(7)
    counts, stats, concurrent = batched_counts(target, draft, "whole", RAW)
    stat, df = chi_square(counts, raw_joint, SAMPLES)
    print(f"batched, raw sampling: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats} concurrent={concurrent}")
    assert concurrent >= 4
    assert_paths_exercised(stats)
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"


def test_misreported_raw_distribution_is_rejected_in_a_batch(pair_and_joint, raw_joint, monkeypatch):
    """Negative control of the batched draw: ``draw_blocks`` drawing as the real code but reporting
    uniform logits must fail the same test."""
    target, draft, _ = pair_and_joint
    original = block_module.draw_blocks

    def misreport(*args, **kwargs):
        return [DraftBlock(tokens=b.tokens, logits=torch.zeros_like(b.logits), confidences=b.confidences)
                for b in original(*args, **kwargs)]

    patch_everywhere(monkeypatch, original, misreport)
    torch.manual_seed(7)
    counts, _, _ = batched_counts(target, draft, "whole", RAW)
    stat, df = chi_square(counts, raw_joint, SAMPLES)
    print(f"batched, raw sampling misreported: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f}")
    assert stat > chi_square_quantile(df), f"misreporting went undetected: chi2={stat:.1f}"


def test_batched_raw_sampling_with_a_restricted_draft_matches_target_distribution(pair_and_joint, raw_joint):
    """A draft restricted to 4 of the 6 tokens, sampled with no logits processor: every block is drawn
    among its 4 ids (a row-wise multinomial over the K logits, mapped to target ids) and reports K logits that
    are spread over the target's vocabulary, -inf outside, only when the verifier reads them. The batch must
    still sample the target's joint, the target's tokens outside the vocabulary coming only from residual
    and bonus draws. Negative control below: the same draws reported with the outside tokens given mass.
    Besides the joint, each position's token marginal is tested (6 cells: more power against a change of
    one token's probability). Measured: joint chi2 18.2 (df 16, bound 46.2), marginals 7.5 / 19.4 / 1.9 / 8.1
    (df 5, bound 26.3); the negative control: 96.5. Mutations run once: the drawn index not mapped through
    ``draft_vocab_ids`` in ``block._draw_rows`` (indices 0..3 proposed as tokens 0..3): joint chi2 66.6, fails;
    ``draft_vocab.spread_to_vocabulary`` (which ``DraftBlock.logits`` calls) writing the K logits to ids 0..3: token 1's marginal chi2 261.1, fails."""
    target, draft, _ = pair_and_joint
    small = restricted_draft(draft)
    torch.manual_seed(7)
    counts, stats, concurrent = batched_counts(target, small, "whole", RAW)
    stat, df = chi_square(counts, raw_joint, SAMPLES)
    print(f"batched, raw sampling, restricted draft: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats} concurrent={concurrent}")
    assert concurrent >= 4
    assert_paths_exercised(stats)
    outside = sum(n for seq, n in counts.items() if any(t not in RESTRICTED for t in seq))
    assert outside > SAMPLES / 10, "the target's tokens outside the draft vocabulary must occur"
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"
    assert_marginals_match(counts, raw_joint, SAMPLES, "batched, raw sampling, restricted draft")


def test_restricted_draft_reporting_mass_outside_its_vocabulary_is_rejected_in_a_batch(pair_and_joint, raw_joint, monkeypatch):
    """Negative control of the test above: the restricted draft draws as the real code, but its reported
    distribution gives the tokens outside its vocabulary mass (their logits the row's maximum)."""
    target, draft, _ = pair_and_joint
    small = restricted_draft(draft)
    original = block_module.draw_blocks
    outside = [t for t in range(VOCAB) if t not in RESTRICTED]

    def misreport(*args, **kwargs):
        blocks = []
        for b in original(*args, **kwargs):
            reported = b.logits.clone()
            reported[..., outside] = reported.max(dim=-1, keepdim=True).values
            blocks.append(DraftBlock(tokens=b.tokens, logits=reported, confidences=b.confidences))
        return blocks

    patch_everywhere(monkeypatch, original, misreport)
    torch.manual_seed(7)
    counts, _, _ = batched_counts(target, small, "whole", RAW)
    stat, df = chi_square(counts, raw_joint, SAMPLES)
    print(f"batched, raw sampling, restricted draft reporting outside mass: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f}")
    assert stat > chi_square_quantile(df), f"reporting mass outside the vocabulary went undetected: chi2={stat:.1f}"
