"""Lookup rounds: a round verifies a prompt-lookup guess instead of drafting when the hardware-aware policy
expects more tokens per second from it (``dspark_hf.drafting.ngram_lookup``,
``dspark_hf.verification.scheduling.lookup_rounds``). Greedy identity with lookup rounds is tested here;
sampling with them in tests/test_sampling_distribution.py."""

from __future__ import annotations

import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.drafting.ngram_lookup import ngram_continuation
from dspark_hf.verification.policies import HardwareAware, resolve_policy
from dspark_hf.verification.scheduling.cost_profile import CostProfile
from dspark_hf.verification.scheduling.drafting_gate import kept_gates
from dspark_hf.verification.scheduling.lookup_rounds import LookupRounds


def guess(seq, max_tokens, max_ngram=4):
    tokens, n = ngram_continuation(torch.tensor(seq), max_tokens, max_ngram)
    return tokens.tolist(), n


def test_ngram_continuation_takes_the_longest_suffix_then_its_most_recent_occurrence():
    """The guess follows the most recent earlier occurrence of the longest suffix that occurs (at least one
    token after it, the suffix itself excluded). Mutations run once: scanning for the first occurrence
    (``hits[0]``) fails the most-recent assertion; trying sizes from the smallest up fails the longest one."""
    # (2, 3) occurs at 2 and at 7: the most recent one is followed by 7, 8
    assert guess([5, 1, 2, 3, 9, 4, 1, 2, 3, 7, 8, 2, 3], 3, max_ngram=2) == ([7, 8, 2], 2)
    # (1, 2, 3) occurs at 0 (followed by 4); the shorter (2, 3) more recently at 5 (followed by 5)
    assert guess([1, 2, 3, 4, 9, 2, 3, 5, 1, 2, 3], 2) == ([4, 9], 3)
    assert guess([1, 2, 3], 5) == ([], 0)  # no earlier occurrence of any suffix
    assert guess([4, 5, 4], 7) == ([5, 4], 1)  # the guess may run to the sequence's end, never past it
    assert guess([7, 7], 3) == ([7], 1)
    assert guess([7], 3) == ([], 0)
    assert guess([1, 2, 1, 2], 0) == ([], 0)


def test_lookup_length_maximises_expected_tokens_per_second_per_ngram_size():
    """``LookupRounds.length``: with the prior (0.5 per slot) on a flat cost curve the whole guess pays; on a
    curve where 3 tokens cost twice 2, one guessed token; against a rate it cannot reach, none. Rejections
    of 1-gram guesses lower the 1-gram estimates only. Mutations run once: one estimator shared by every
    n-gram size fails the 3-gram assertion; the length chosen without comparing with ``rate_to_beat``
    fails the ``== 0`` ones."""
    rounds = LookupRounds(4)
    flat = lambda tokens: 1.0  # noqa: E731
    steep = lambda tokens: 1.0 if tokens <= 2 else 2.0  # noqa: E731
    assert rounds.length(1, 4, flat, rate_to_beat=1.0) == 4  # 1 + .5 + .25 + .125 + .0625 tokens per second
    assert rounds.length(1, 2, flat, rate_to_beat=1.0) == 2  # no more than the guess offers
    assert rounds.length(1, 4, steep, rate_to_beat=1.0) == 1  # 1.5 / 1 beats (1.75 ..) / 2
    assert rounds.length(1, 4, flat, rate_to_beat=2.0) == 0  # at most 1.9375 expected
    for _ in range(40):
        rounds.observe(1, verified=1, accepted=0)
    assert rounds.estimator(1).estimates()[0] < 0.1
    assert rounds.length(1, 4, flat, rate_to_beat=1.2) == 0
    assert rounds.length(3, 4, flat, rate_to_beat=1.2) == 4  # a 3-gram guess keeps its own estimates


def test_hardware_spec_options_for_lookup_rounds():
    assert resolve_policy("hardware").use_lookup
    assert not resolve_policy("hardware:no-lookup").use_lookup
    both = resolve_policy("hardware:whole,no-lookup")
    assert both.on_missing == "whole" and not both.use_lookup and both.use_gate
    assert "lookup=False" in repr(both)


def tiny_pair_with_cheap_guesses():
    """The tiny target, the fixture DSpark draft, a profile on which a forward costs next to nothing (so a guess
    is nearly free next to a real drafting round) and a prompt that repeats itself."""
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    tokens = list(range(1, 2 * draft.config.block_size + 3))
    profile = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                          target_seconds=[1e-6 * b for b in tokens], draft_seconds=1e-6)
    return target, draft, profile, torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7, 5, 17]])


def test_lookup_rounds_keep_greedy_output_identical_and_are_kept_apart_from_drafting_rounds(monkeypatch):
    """Tiny target (it repeats itself, so guesses exist and some are accepted), the fixture DSpark draft,
    the hardware-aware policy on a profile where a guess is nearly free: after the first drafting round
    most rounds verify a guess; the output is plain greedy's; every lookup round's record says so (no
    confidences, ``proposed == verified >= 1``); the drafting gate counts drafting rounds only and the
    lookup estimates count the lookup rounds. Mutations run once: a lookup round dropping the carried
    features (``self._carried = []`` before returning) fails (the next drafting round gets too few rows);
    ``observe`` treating lookup rounds as drafting rounds fails the gate's count."""
    target, draft, profile, ids = tiny_pair_with_cheap_guesses()
    plain = target.generate(ids, max_new_tokens=48, do_sample=False, attention_mask=torch.ones_like(ids))
    observed = []
    real_observe = LookupRounds.observe
    monkeypatch.setattr(LookupRounds, "observe", lambda self, *a, **k: (observed.append(a), real_observe(self, *a, **k)))
    config = GenerationConfig(max_new_tokens=48, do_sample=False, dspark_policy=HardwareAware(profile))
    out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
    assert torch.equal(out, plain)
    steps = draft.last_telemetry.steps
    lookups = [s for s in steps if s.source == "lookup"]
    drafting = [s for s in steps if s.source == "draft"]
    summary = draft.last_telemetry.summary()
    assert len(lookups) >= 10 and drafting, summary
    assert sum(s.accepted for s in lookups) > 0, summary
    assert all(s.confidences is None and s.proposed == s.verified >= 1 for s in lookups)
    assert "prompt-lookup rounds" in summary
    (gate,) = kept_gates(draft).values()  # generate() works on a copy of the policy; the gate is kept on the draft
    assert gate.drafting_rounds == len(drafting)
    assert [a[1:] for a in observed] == [(s.verified, s.accepted) for s in lookups]


def test_no_lookup_and_always_draft_never_verify_a_guess():
    target, draft, profile, ids = tiny_pair_with_cheap_guesses()
    for policy in (HardwareAware(profile, lookup=False), HardwareAware(profile, gate=False)):
        config = GenerationConfig(max_new_tokens=24, do_sample=False, dspark_policy=policy)
        target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        assert draft.last_telemetry.lookup_rounds == 0
