"""Lookup rows in the batched engine: a decoding request that does not draft may verify a prompt-lookup guess
in the same packed forward (``SpeculativeBatchProcessor._lookup_guesses``, ``planning.plan_lengths(guesses=...)``,
``planning.requests_to_draft(base=...)``). Greedy identity and the bookkeeping here; sampling with guesses in
``test_batched_lookup_sampling`` below (the pair and exact joint of tests/test_sampling_distribution.py)."""

from __future__ import annotations

import pytest
import torch

from batched_support import fixture_draft, greedy_config, plain_greedy, prompts_of, small_cache
from conftest import tiny_qwen3_target
from dspark_hf.batching import processor as processor_module
from dspark_hf.batching.planning import plan_lengths, requests_to_draft
from dspark_hf.verification.policies import HardwareAware
from dspark_hf.verification.scheduling.cost_profile import CostProfile
from dspark_hf.verification.scheduling.drafting_gate import DraftingGate
from dspark_hf.verification.scheduling.lookup_rounds import LookupRounds


def flat_profile(block_size: int) -> CostProfile:
    """A forward of ``B`` tokens costs ``100 (1 + 1e-4 (B - 1))`` s: every slot with a non-zero survival pays."""
    tokens = list(range(1, 2 * block_size + 3))
    return CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                       target_seconds=[100.0 * (1 + 1e-4 * (b - 1)) for b in tokens])


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3_target()


def test_lookup_rows_keep_greedy_output_identical_and_teach_only_the_lookup_estimates(target, monkeypatch):
    """Three requests whose prompts repeat a handful of tokens (so guesses exist), the hardware-aware policy on
    a flat cost curve with its gate and lookup rounds on: requests verify guesses in packed forwards beside
    drafted blocks and plain rows; every output equals plain batch-1 greedy; each lookup round's record says so
    (``source == "lookup"``, no confidences, ``proposed == verified >= 1``), the lookup estimates see exactly
    the lookup rounds and the draft's estimates exactly the drafting rounds; a step with no drafted block
    gives the drafting gate one token per decoding request (accepted guesses are not plain tokens).
    Mutations run once: ``observe_round`` sending lookup rounds to the draft's estimator (the ``source``
    check removed): fails (the lookup estimates see none of the lookup rounds); the gate given ``emitted_tokens`` (accepted guesses
    counted): fails the one-token-per-request assertion; the verify branch of ``update_batch`` keeping no
    features for a guess's rows (``add_features`` skipped when ``block is None``): fails (the next drafting
    round's context is short of rows and raises)."""
    draft = fixture_draft()
    prompts = prompts_of([12, 17, 23], seed=31, low=5, high=14)
    new = 40
    plain = plain_greedy(target, prompts, new)
    lookups_seen, drafts_seen, gate_tokens = [], [], []
    real_lookup, real_plain, real_observe = LookupRounds.observe, DraftingGate.measure_plain, DraftingGate.observe
    monkeypatch.setattr(LookupRounds, "observe", lambda self, n, v, a: (lookups_seen.append((v, a)), real_lookup(self, n, v, a)))

    def measure_plain(self, tokens, seconds):
        gate_tokens.append(tokens)
        return real_plain(self, tokens, seconds)

    def observe(self, drafted, tokens, seconds, counted=True):
        if not drafted:
            gate_tokens.append(tokens)
        return real_observe(self, drafted, tokens, seconds, counted)

    monkeypatch.setattr(DraftingGate, "measure_plain", measure_plain)
    monkeypatch.setattr(DraftingGate, "observe", observe)
    policy = HardwareAware(profile=flat_profile(draft.config.block_size))
    real_estimator = policy._estimator_for

    def spied_estimator(d):
        estimator = real_estimator(d)
        original = estimator.observe
        estimator.observe = lambda record: (drafts_seen.append(record.source), original(record))
        return estimator

    monkeypatch.setattr(policy, "_estimator_for", spied_estimator)
    results = target.generate_batch(inputs=prompts, generation_config=greedy_config(new, policy),
                                    continuous_batching_config=small_cache(), assistant_model=draft, progress_bar=False)
    assert all(r.error is None for r in results.values())
    assert [r.generated_tokens for r in results.values()] == plain
    telemetry = draft.last_batch_telemetry
    rounds = [s for t in telemetry.requests.values() for s in t.steps]
    lookups = [s for s in rounds if s.source == "lookup"]
    drafting = [s for s in rounds if s.source == "draft"]
    assert len(lookups) >= 10 and drafting, telemetry.summary()
    assert sum(s.accepted for s in lookups) > 0 and any(s.verified > s.accepted for s in lookups), telemetry.summary()
    assert all(s.confidences is None and s.proposed == s.verified >= 1 for s in lookups)
    assert "prompt-lookup rounds" in telemetry.summary()
    assert sum(s.lookup_requests for s in telemetry.steps) == len(lookups)
    assert sorted(lookups_seen) == sorted((s.verified, s.accepted) for s in lookups)
    assert drafts_seen == ["draft"] * len(drafting)
    # steps with no drafted block: each decoding request adds one token that is not a guessed one
    no_blocks = [s for s in telemetry.steps if not s.prefill_tokens and all(r.source != "draft" for r in s.rounds.values())
                 and any(r.source == "lookup" and r.accepted for r in s.rounds.values())]
    assert no_blocks and gate_tokens and max(gate_tokens) <= len(prompts), gate_tokens


def test_no_lookup_and_always_draft_verify_no_guess_in_a_batch(target):
    draft = fixture_draft()
    prompts = prompts_of([12, 17], seed=31, low=5, high=14)
    for policy in (HardwareAware(profile=flat_profile(draft.config.block_size), lookup=False),
                   HardwareAware(profile=flat_profile(draft.config.block_size), gate=False)):
        target.generate_batch(inputs=prompts, generation_config=greedy_config(16, policy),
                              continuous_batching_config=small_cache(), assistant_model=draft, progress_bar=False)
        rounds = [s for t in draft.last_batch_telemetry.requests.values() for s in t.steps]
        assert rounds and not any(s.source == "lookup" for s in rounds)


def test_planning_weighs_a_guess_against_drafting():
    """``requests_to_draft(base=...)``: on a curve where a slot costs a twentieth of a step and a drafting call
    a fiftieth, a request whose guess is expected to be right 90 % of the time per slot does not draft a block
    of 0.8-confidence slots, while one without a guess does; without ``base`` both draft, and with two such
    guesses neither. ``plan_lengths`` returns the guesses' lengths after the blocks', within each guess's
    cap, and none for a per-request policy. Mutation run once: ``requests_to_draft`` ignoring ``base``
    (``base_gains`` left 0): fails the first assertion."""
    block = 4
    tokens = list(range(1, 12))
    profile = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                          target_seconds=[1.0 + 0.05 * (b - 1) for b in tokens])
    policy = HardwareAware(profile=profile)
    policy.profile = profile
    policy.calibrated = lambda c: c  # raw confidences
    sure = torch.full((block,), 0.8, dtype=torch.float64)
    sps = profile.steps_per_second
    good_guess = [0.9] * block
    assert requests_to_draft(policy, [sure, sure], block, sps, 0.02, base=[good_guess, []]) == [False, True]
    assert requests_to_draft(policy, [sure, sure], block, sps, 0.02) == [True, True]
    assert requests_to_draft(policy, [sure, sure], block, sps, 0.02, base=[good_guess, good_guess]) == [False, False]
    lengths = plan_lengths(policy, [sure], block, [block], 64, steps_per_second=sps, guesses=[good_guess, [0.9, 0.9]],
                           guess_caps=[4, 1])
    assert lengths == [4, 4, 1], lengths
    from dspark_hf.verification.policies import FixedLength

    assert plan_lengths(FixedLength(2), [sure], block, [block], 64, guesses=[good_guess], guess_caps=[4]) == [2, 0]


# -- sampling ------------------------------------------------------------------------------------------------


def test_batched_lookup_sampling_matches_target_distribution(monkeypatch):
    """Guesses verified under sampling in a batch (each row drawn from the target, the guessed tokens kept
    while drawn; ``acceptance.verify_request`` with no draft distribution): the pair, warpers and exact joint
    of tests/test_sampling_distribution.py, 1,000 requests of one ``generate_batch`` call, up to 16 per packed
    forward; no request drafts on its own (``requests_to_draft`` answers no), and on a flat cost curve every
    guess is verified. Measured (seed 7): chi2 28.1 at df 22 (bound 55.8), 1,286 lookup rounds, 147 guessed tokens
    accepted, 1,139 rounds with a rejection, 16 requests per forward. The negative control verifies the same
    guesses by speculative sampling against a reported uniform distribution and must exceed the bound (measured:
    chi2 642.0)."""
    counts, stats, joint = _lookup_sampling(monkeypatch)
    from test_sampling_distribution import SAMPLES, chi_square, chi_square_quantile

    stat, df = chi_square(counts, joint, SAMPLES)
    print(f"batched lookup rows: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats}")
    assert stats["concurrent"] >= 4
    assert stats["accepted"] > SAMPLES / 20 and stats["rejected"] > SAMPLES / 20, stats
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"


def test_batched_lookup_sampling_reporting_a_distribution_is_rejected(monkeypatch):
    real = processor_module.verify_request

    def reporting(logits, sequence, drafted, draft_logits, *args):
        if draft_logits is None and drafted.shape[1]:  # a guess verified as if drawn from a uniform distribution
            draft_logits = torch.zeros(1, drafted.shape[1], logits.shape[-1])
        return real(logits, sequence, drafted, draft_logits, *args)

    monkeypatch.setattr(processor_module, "verify_request", reporting)
    counts, stats, joint = _lookup_sampling(monkeypatch)
    from test_sampling_distribution import SAMPLES, chi_square, chi_square_quantile

    stat, df = chi_square(counts, joint, SAMPLES)
    print(f"batched lookup rows reporting uniform: chi2={stat:.1f} df={df} bound={chi_square_quantile(df):.1f} {stats}")
    assert stat > chi_square_quantile(df), f"a reported distribution for guesses went undetected: chi2={stat:.1f}"


def _lookup_sampling(monkeypatch):
    from test_sampling_distribution import PROMPT, SAMPLES, Sampling, build_pair, exact_joint

    target, draft = build_pair()
    joint = exact_joint(target)
    monkeypatch.setattr(processor_module, "requests_to_draft", lambda policy, confidences, *a, **k: [False] * len(confidences))
    policy = HardwareAware(profile=flat_profile(draft.config.block_size))
    torch.manual_seed(7)
    results = target.generate_batch(inputs=[PROMPT[0].tolist()] * SAMPLES, generation_config=Sampling().generation_config(policy),
                                    continuous_batching_config=small_cache(num_blocks=96), assistant_model=draft, progress_bar=False)
    counts: dict[tuple[int, ...], int] = {}
    for r in results.values():
        assert r.error is None
        counts[tuple(r.generated_tokens)] = counts.get(tuple(r.generated_tokens), 0) + 1
    telemetry = draft.last_batch_telemetry
    lookups = [s for t in telemetry.requests.values() for s in t.steps if s.source == "lookup"]
    stats = {"lookup rounds": len(lookups), "accepted": sum(s.accepted for s in lookups),
             "rejected": sum(s.verified > s.accepted for s in lookups), "concurrent": max(s.decoding for s in telemetry.steps)}
    return counts, stats, joint
