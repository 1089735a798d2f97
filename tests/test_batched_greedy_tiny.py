"""Batched DSpark on transformers' continuous batching (``generate_batch(..., assistant_model=draft)``)
is lossless: every request's tokens equal plain batch-1 greedy ``generate`` of its prompt (float32),
on a tiny random Qwen3 target with the Qwen3 fixture drafts.

Mutations run once each (the named test failed, then the change was reverted):

- ``acceptance.verify_request``: accept one drafted token more than matched
  (``accepted = min(length, int(matches.cumprod(dim=0).sum()) + 1)``):
  ``test_forced_draft_every_batch_size`` fails (tokens differ from plain);
- ``processor.update_batch``: keep the last ``accepted + 1`` rows of a verification instead of the
  first (``own[: accepted + 1]`` -> ``own[own.shape[0] - accepted - 1 :]``, the right count, the
  wrong positions): ``test_draft_sees_exactly_the_committed_features`` fails (features differ);
- ``processor.update_batch``: no rewind (the ``rewind_request`` call replaced by ``pass``):
  ``test_forced_draft_every_batch_size`` fails (the next forward attends to rejected keys);
- ``planning.plan_lengths``: ignore the tokens-left caps (``caps = [block_size for c in caps]``):
  ``test_max_new_tokens_and_eos_per_request`` fails (a slot past ``max_new_tokens`` is verified;
  the output itself stays right, transformers drops tokens past the limit).
"""

from __future__ import annotations

import sys

import pytest
import torch

from batched_support import fixture_draft, force_partly_right, greedy_config, plain_greedy, prompts_of, rounds, small_cache
from conftest import synthetic_profile, tiny_qwen3_target
from dspark_hf.batching import processor as processor_module
from dspark_hf.verification.policies import HardwareAware, OnlineAcceptance
from dspark_hf.drafting.block import DraftBlock
from dspark_hf.verification.scheduling.prefix_scheduler import schedule_prefixes

NEW = 24


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3_target()


def run(target, draft, prompts, new=NEW, policy="whole", **config):
    results = target.generate_batch(inputs=prompts, generation_config=greedy_config(new, policy, **config),
                                    continuous_batching_config=small_cache(), assistant_model=draft)
    assert all(r.error is None for r in results.values())
    return [r.generated_tokens for r in results.values()]


@pytest.mark.parametrize("requests", [1, 2, 4, 8])
def test_forced_draft_every_batch_size(target, requests, monkeypatch):
    """Prompts of different lengths, a draft right except at scheduled slots: blocks are partly
    accepted and partly rejected in the same packed forwards, and every request stays exact."""
    draft = fixture_draft()
    prompts = prompts_of([5 + 7 * i for i in range(requests)], seed=requests)
    plain = plain_greedy(target, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    assert run(target, draft, prompts) == plain
    steps = rounds(draft)
    assert any(s.accepted > 0 for s in steps), "no drafted token was accepted"
    assert any(s.accepted < s.verified for s in steps), "no drafted token was rejected"
    if requests > 1:
        assert max(s.decoding for s in draft.last_batch_telemetry.steps) == requests, "requests were not verified together"


@pytest.mark.parametrize("name", ["qwen3_dspark_vanilla", "qwen3_dspark_rnn", "qwen3_dflash"])
def test_random_draft(target, name):
    """Unforced fixture drafts (nearly always rejected), with and without a confidence head."""
    draft = fixture_draft(name)
    prompts = prompts_of([6, 13, 21], seed=5)
    assert run(target, draft, prompts) == plain_greedy(target, prompts, NEW)


@pytest.mark.parametrize(
    "policy",
    ["whole", "fixed:2", "fixed:0", "threshold:0.5", "survival:0.25", "hardware", "online"],
)
def test_every_policy(target, policy, monkeypatch):
    draft = fixture_draft()
    if policy == "hardware":
        policy = HardwareAware(profile=synthetic_profile(draft.config.block_size), gate=False)
    elif policy == "online":
        policy = OnlineAcceptance(profile=synthetic_profile(draft.config.block_size), gate=False)
    prompts = prompts_of([4, 11, 19, 26], seed=7)
    plain = plain_greedy(target, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    assert run(target, draft, prompts, policy=policy) == plain
    steps = rounds(draft)
    assert all(0 <= s.accepted <= s.verified <= s.proposed for s in steps)
    if policy == "fixed:0":
        assert all(s.verified == 0 for s in steps)


def test_hardware_policy_schedules_over_the_batch(target, monkeypatch):
    """The hardware-aware policy runs Algorithm 1 once per step over every decoding request: with
    scripted confidences (request 0 sure, 1 doubtful, 2 in between) one step gives the three requests
    the lengths ``schedule_prefixes`` gives their rows together, which differ per request."""
    draft = fixture_draft()
    prompts = prompts_of([5, 9, 14], seed=9)
    scripted = {0: 0.95, 1: 0.2, 2: 0.7}
    real_rounds = processor_module.draft_rounds

    def scripted_rounds(draft_, contexts, features, prefixes, *args):
        blocks = real_rounds(draft_, contexts, features, prefixes, *args)
        out = []
        for block, prefix_ids in zip(blocks, prefixes):
            key = next(i for i, p in enumerate(prompts) if prefix_ids[0, : len(p)].tolist() == p)
            out.append(DraftBlock(tokens=block.tokens, logits=block.logits, confidences=torch.full_like(block.confidences, scripted[key])))
        return out

    calls = []
    real_plan = processor_module.plan_lengths

    def spy(policy, confidences, *args, **kwargs):
        lengths = real_plan(policy, confidences, *args, **kwargs)
        caps = args[1]
        calls.append(([round(float(c[0]), 2) for c in confidences], list(caps), lengths))
        return lengths

    monkeypatch.setattr(processor_module, "draft_rounds", scripted_rounds)
    monkeypatch.setattr(processor_module, "plan_lengths", spy)
    profile = synthetic_profile(draft.config.block_size)
    assert run(target, draft, prompts, policy=HardwareAware(profile=profile, gate=False)) == plain_greedy(target, prompts, NEW)
    full = [call for call in calls if len(call[0]) == 3]
    assert full, "the three requests were never scheduled together"
    for confidences, caps, lengths in full:
        rows = [[c] * draft.config.block_size for c in confidences]
        assert lengths == schedule_prefixes(rows, profile.steps_per_second, max_lengths=caps)
    confidences, _, lengths = full[0]
    assert lengths[0] >= lengths[2] >= lengths[1] and lengths[0] > lengths[1], (confidences, lengths)


def test_max_new_tokens_and_eos_per_request(target, monkeypatch):
    """An EOS inside an accepted block ends that request there; the others go on to max_new_tokens."""
    draft = fixture_draft()
    prompts = prompts_of([5, 12, 18, 25], seed=11)
    free = plain_greedy(target, prompts, NEW)
    eos = free[1][9]  # a token request 1 generates mid-way
    plain = plain_greedy(target, prompts, NEW, eos_token_id=eos)
    assert len({len(p) for p in plain}) > 1, "EOS must end some requests early"
    force_partly_right(monkeypatch, prompts, free)
    assert run(target, draft, prompts, eos_token_id=eos) == plain
    assert run(target, draft, prompts, new=7) == [p[:7] for p in free]
    for request in draft.last_batch_telemetry.requests.values():  # no slot past max_new_tokens is verified
        done = request.prefill_tokens
        for s in request.steps:
            assert done + s.verified + 1 <= 7, "a slot past max_new_tokens was verified"
            done += s.emitted


def test_draft_sees_exactly_the_committed_features(target, monkeypatch):
    """The rows fed to each request's draft context, round after round, are the target's
    hidden_states[l + 1] of that request's committed positions, in order, each once."""
    draft = fixture_draft()
    prompts = prompts_of([7, 15, 10], seed=13)
    plain = plain_greedy(target, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    seen: dict[int, list[torch.Tensor]] = {}
    forced = processor_module.draft_rounds

    def record(draft_, contexts, features, prefixes, *args):
        for rows, prefix_ids in zip(features, prefixes):
            key = next(i for i, p in enumerate(prompts) if prefix_ids[0, : len(p)].tolist() == p)
            seen.setdefault(key, []).append(rows[0])
        return forced(draft_, contexts, features, prefixes, *args)

    monkeypatch.setattr(processor_module, "draft_rounds", record)
    out = run(target, draft, prompts)
    assert out == plain
    for i, prompt in enumerate(prompts):
        rows = torch.cat(seen[i], dim=0)
        with torch.no_grad():
            hidden = target(torch.tensor([prompt + out[i]]), output_hidden_states=True).hidden_states
        expected = torch.cat([hidden[l + 1] for l in draft.config.target_layer_ids], dim=-1)[0, : rows.shape[0]]
        assert rows.shape[0] >= len(prompt) + len(out[i]) - 2 - draft.config.block_size
        torch.testing.assert_close(rows, expected, atol=1e-4, rtol=1e-4)


def test_telemetry_per_step_and_per_request(target, monkeypatch):
    draft = fixture_draft()
    prompts = prompts_of([5, 9], seed=17)
    plain = plain_greedy(target, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    seen = []
    assert run(target, draft, prompts, dspark_callback=seen.append) == plain
    telemetry = draft.last_batch_telemetry
    assert seen == telemetry.steps
    for request, out in zip(telemetry.requests.values(), plain):
        assert request.new_tokens == len(out)
    for step in telemetry.steps:
        assert step.batch_tokens == step.verify_tokens + step.prefill_tokens + step.plain_tokens
        assert step.verify_tokens == sum(r.verified + 1 for r in step.rounds.values())
    assert "requests" in telemetry.summary() and telemetry.tau > 1.0


def test_hardware_policy_skips_drafting_that_does_not_pay(target):
    """With a random draft (confidences about 0.5) on a cost curve where no slot pays, the
    hardware-aware policy stops drafting: the decoding requests take plain steps, with a forced
    exploratory draft after EXPLORE_EVERY - 1 skipped steps, then after twice as many (the interval
    doubles while the forced drafts are the only ones), never more than EXPLORE_EVERY_MAX - 1; the
    output is still plain greedy's. Mutations run once: ``planning.requests_to_draft`` always all
    ``True``: fails (no step skips drafting); ``drafting_decided`` resetting the interval after a
    forced draft: fails (no run of skipped steps longer than EXPLORE_EVERY - 1). Plain steps' rows are counted as
    ``plain_tokens``, every prompt row once as ``prefill_tokens``."""
    from dspark_hf.batching.request_state import EXPLORE_EVERY, EXPLORE_EVERY_MAX

    draft = fixture_draft()
    prompts = prompts_of([5, 9, 14], seed=19)
    new = 3 * EXPLORE_EVERY + 4
    policy = HardwareAware(profile=synthetic_profile(draft.config.block_size), gate=False)
    assert run(target, draft, prompts, new=new, policy=policy) == plain_greedy(target, prompts, new)
    steps = draft.last_batch_telemetry.steps
    skipped = [s.drafting_skipped for s in steps]
    assert sum(skipped) > len(steps) // 2, skipped
    assert all(not s.rounds for s in steps if s.drafting_skipped)
    # a skipped step's rows are the decoding requests' plain tokens, not prefill (mutation run once: the processor
    # counting them in prefill_tokens, as before 2026-12-07: fails)
    decoding_only = [s for s in steps if s.drafting_skipped and s.batch_tokens == len(prompts)]
    assert decoding_only and all(s.plain_tokens == len(prompts) and s.prefill_tokens == 0 for s in decoding_only)
    assert sum(s.prefill_tokens for s in steps) == sum(len(p) for p in prompts)
    runs, length = [], 0
    for flag in skipped:
        if flag:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    runs.append(length)
    assert runs[0] == EXPLORE_EVERY - 1, skipped
    assert runs[1] == 2 * EXPLORE_EVERY - 1, skipped
    assert max(runs) <= EXPLORE_EVERY_MAX - 1


def test_measured_gate_makes_whole_steps_plain_when_drafting_steps_are_behind(target, monkeypatch):
    """The step gate (``Speculation.step_gate``): with a plain-step estimate of 1 ns per token that
    never moves (smoothing 0), every drafting step is behind it, so the step after the gate's 8 warm-up
    drafting steps is a plain one although Algorithm 1, on a flat cost curve where every slot pays, would
    draft; a second ``generate_batch`` with the same draft starts from the kept gate and skips from its
    first decoding step (plain steps until the exploration interval the first run ended on, kept by a gate
    over a batch, then a forced one); the output stays plain greedy's.
    ``hardware:always-draft`` never skips. Mutations run once: the ``should_draft`` check in
    ``_choose_drafting`` removed: fails (no skipped step); ``kept_gate`` making a new gate per engine:
    fails (the second run drafts its first steps); the exploring step deciding as any other (``exploring``
    kept False in ``_choose_drafting``): fails (all three requests, each forced by its own interval, draft)."""
    from dspark_hf.batching import speculation as speculation_module
    from dspark_hf.verification.scheduling.cost_profile import CostProfile
    from dspark_hf.verification.scheduling.drafting_gate import DraftingGate
    from dspark_hf.verification.scheduling.drafting_gate import kept_gates as drafting_gates

    monkeypatch.setattr(speculation_module, "DraftingGate",
                        lambda plain_seconds, **kw: DraftingGate(1e-9, smoothing=0.0, plain_measured=True, **kw))
    draft = fixture_draft()
    prompts = prompts_of([5, 9, 14], seed=23)
    new = 40
    plain = plain_greedy(target, prompts, new)
    force_partly_right(monkeypatch, prompts, plain)
    tokens = list(range(1, 2 * draft.config.block_size + 3))
    flat = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                       target_seconds=[100.0 * (1 + 1e-4 * (b - 1)) for b in tokens])
    for gated, again in ((True, False), (True, True), (False, False)):
        policy = HardwareAware(profile=flat, gate=gated, lookup=False)
        if again:  # a gate over a batch keeps the exploration interval the first run ended on
            interval = next(g.explore_every for k, g in drafting_gates(draft).items() if k[:2] == ("packed", 3))
            assert interval > 8
        assert run(target, draft, prompts, new=new, policy=policy) == plain
        steps = draft.last_batch_telemetry.steps
        skipped = [s.drafting_skipped for s in steps]
        if again:  # prefill, plain steps, forced exploration
            assert skipped[: interval + 1] == [False] + [True] * (interval - 1) + [False], skipped
            # the exploring step drafts one request (SpeculativeBatchProcessor._explorer), though all three
            # requests' own exploration intervals ran out during the skipped steps
            assert steps[interval].drafted_requests == 1, [s.drafted_requests for s in steps[: interval + 2]]
        elif gated:
            assert skipped[:10] == [False] * 9 + [True], skipped  # prefill, 8 warm-up drafting steps, then plain
            assert any(s.accepted > 0 for s in rounds(draft))
        else:
            assert not any(skipped), skipped


def test_plain_steps_no_request_chose_to_draft_price_the_step_gate(target, monkeypatch):
    """A step made plain by the requests themselves (Algorithm 1 found no request's drafting worth it,
    the step gate having said draft) is still a plain step of that many requests: the gate averages its
    seconds per token into its plain estimate (``DraftingGate.measure_plain``). Here the gate starts from an
    absurd 1,000 s per plain token and the requests draft only when their exploration interval forces
    them; after the run the 3-request gate has priced the skipped steps, and its estimate is a measured one.
    Mutation run once: the processor's ``elif step["skipped"]`` branch removed: fails (no plain step
    priced; the gate believed drafting ahead on a plain estimate no step measured, the C = 8 trace of
    2026-12-05's run i)."""
    from dspark_hf.batching import speculation as speculation_module
    from dspark_hf.verification.scheduling.drafting_gate import DraftingGate
    from dspark_hf.verification.scheduling.drafting_gate import kept_gates as drafting_gates

    monkeypatch.setattr(speculation_module, "DraftingGate", lambda plain_seconds, **kw: DraftingGate(1e3, **kw))
    monkeypatch.setattr(processor_module, "requests_to_draft",
                        lambda policy, confidences, *a, must_draft=None, **k: [bool(must_draft and must_draft[r])
                                                                              for r in range(len(confidences))])
    draft = fixture_draft()
    prompts = prompts_of([5, 9, 14], seed=29)
    new = 30
    policy = HardwareAware(profile=synthetic_profile(draft.config.block_size), gate=True, lookup=False)
    assert run(target, draft, prompts, new=new, policy=policy) == plain_greedy(target, prompts, new)
    steps = draft.last_batch_telemetry.steps
    skipped = [s for s in steps if s.drafting_skipped]
    assert len(skipped) >= 5, [s.drafting_skipped for s in steps]
    gate = next(g for k, g in drafting_gates(draft).items() if k[:2] == ("packed", 3))
    assert gate.plain_rounds >= 5
    assert gate.plain_seconds <= max(s.step_seconds for s in skipped)


def test_exploration_interval_doubles_on_forced_drafts_and_resets_on_merit():
    """The per-request exploration interval: skipped steps count up to it; a forced draft doubles it
    (capped at EXPLORE_EVERY_MAX), a draft on merit resets it to EXPLORE_EVERY.
    Mutation run once: the cap removed (``min(..., EXPLORE_EVERY_MAX)`` -> the doubled value): fails."""
    from dspark_hf.batching.request_state import EXPLORE_EVERY, EXPLORE_EVERY_MAX, SpeculativeRequest

    request = SpeculativeRequest.__new__(SpeculativeRequest)
    request.steps_since_draft, request.explore_every = 0, EXPLORE_EVERY
    intervals = []
    for _ in range(6):
        while not request.must_draft():
            request.drafting_decided(False, False)
        intervals.append(request.steps_since_draft + 1)
        request.drafting_decided(True, False)
    assert intervals == [EXPLORE_EVERY * 2 ** i for i in range(4)] + [EXPLORE_EVERY_MAX] * 2
    request.drafting_decided(True, True)
    assert request.explore_every == EXPLORE_EVERY and request.steps_since_draft == 0


def test_some_requests_draft_while_others_take_a_plain_token(target, monkeypatch):
    """Per-request drafting: in the same packed forwards some requests verify a drafted block while
    the others take one plain token (here the choice alternates by request and step); every request
    stays exact, the requests that skipped drafting consume their features later, and the lengths are
    planned with the plain requests' rows counted in the step (``plan_lengths(plain_requests=...)``).
    Mutations run once: the one-token rows' features dropped (``request.add_features(own)`` of the
    ``has_new_token`` branch replaced by ``pass``): the requests fail (their draft contexts miss
    positions); the processor passing ``plain_requests=0``: fails (the plan ignores rows that share the
    forward, the bug that put the hardware policy 28 % behind fixed:1 at concurrency 2)."""
    draft = fixture_draft()
    prompts = prompts_of([6, 11, 17], seed=23)
    plain = plain_greedy(target, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    calls = [0]

    def alternate(policy, confidences, block_size, sps, drafting, must_draft=None, **overheads):
        calls[0] += 1
        return [bool(must_draft and must_draft[r]) or (r + calls[0]) % 2 == 0 for r in range(len(confidences))]

    monkeypatch.setattr(processor_module, "requests_to_draft", alternate)
    planned = []
    real_plan = processor_module.plan_lengths

    def spy(policy, confidences, *args, plain_requests=0, **kwargs):
        decoding = sys._getframe(1).f_locals["decoding"]  # the processor's decoding requests of this step
        planned.append((len(confidences), plain_requests, len(decoding)))
        return real_plan(policy, confidences, *args, plain_requests=plain_requests, **kwargs)

    monkeypatch.setattr(processor_module, "plan_lengths", spy)
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    tokens = list(range(1, 4 * draft.config.block_size))
    gentle = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,  # a verified slot costs 5 % of a forward
                         target_seconds=[100.0 * (1 + 0.05 * (b - 1)) for b in tokens])
    policy = HardwareAware(profile=gentle, gate=False)
    assert run(target, draft, prompts, policy=policy) == plain
    # the lengths were planned knowing the plain requests' rows share the forward
    assert any(plain > 0 for _, plain, _ in planned), planned
    assert all(verifying + plain == decoding for verifying, plain, decoding in planned), planned
    steps = draft.last_batch_telemetry.steps
    # a step where a request verified a block and another took a single plain token (a one-token row)
    mixed = [s for s in steps if s.rounds and s.batch_tokens - s.verify_tokens == 3 - len(s.rounds)]
    assert len(mixed) >= 3, "no step mixed drafting and plain requests"
    assert sum(r.accepted for s in steps for r in s.rounds.values()) > 0


def test_plan_lengths_counts_the_rows_of_plain_requests():
    """A step where one request verifies while another takes a plain token has ``1 + (l + 1)`` rows:
    on a curve where 4 rows are cheap and 5 dear (the weight-major row counts of this CPU), the
    verifying request gets 2 slots beside one plain request (4 rows) and 3 alone (4 rows); counting
    the plain request's expected token too. Mutation run once: ``plain_requests`` ignored in
    ``plan_lengths`` (no empty rows added): fails (3 slots, a 5-row forward)."""
    from dspark_hf.batching.planning import plan_lengths

    block = 4
    policy = HardwareAware(profile=synthetic_profile(block))
    policy.profile = policy._given_profile
    seconds = {1: 1.0, 2: 1.6, 3: 1.5, 4: 1.2, 5: 2.0, 6: 2.2}
    sps = lambda tokens: 1.0 / seconds[min(tokens, 6)]  # noqa: E731
    sure = torch.full((block,), 0.9)
    assert plan_lengths(policy, [sure], block, [block], 64, steps_per_second=sps) == [3]
    assert plan_lengths(policy, [sure], block, [block], 64, steps_per_second=sps, plain_requests=1) == [2]
    # the token budget holds the plain rows too
    assert plan_lengths(policy, [sure], block, [block], 3, steps_per_second=sps, plain_requests=1) == [1]


def test_requests_to_draft_picks_the_confident_requests():
    """Algorithm 1 over the batch decides per request: on a curve where a verified token costs a
    little and drafting a request costs as much as 0.3 of a forward, confident requests draft and
    unconfident ones do not; with free drafting everyone drafts; with drafting dearer than any gain,
    nobody (a plain step); a request that must draft always does.
    Mutation run once: ordering by ascending gain (``-gains[r]`` -> ``gains[r]``) fails the first case."""
    from dspark_hf.batching.planning import requests_to_draft

    block = 4
    policy = HardwareAware(profile=synthetic_profile(block))
    policy.profile = policy._given_profile  # what setup() does with a given profile
    sps = lambda tokens: 1.0 / (1.0 + 0.05 * tokens)  # noqa: E731  seconds per forward: 1 + 0.05 B
    high, low = torch.full((block,), 0.95), torch.full((block,), 0.05)
    chosen = requests_to_draft(policy, [high, low, high, low], block, sps, 0.3)
    assert chosen == [True, False, True, False]
    assert requests_to_draft(policy, [high, high, high], block, sps, 0.0) == [True, True, True]
    assert requests_to_draft(policy, [high, low], block, sps, 50.0) == [False, False]
    assert requests_to_draft(policy, [low, low], block, sps, 50.0, must_draft=[False, True]) == [False, True]
    assert requests_to_draft(policy, [None, low], block, sps, 50.0) == [True, False]


def test_bf16_draft_beside_a_float32_target_stays_exact(target):
    """The load benchmark's default pairing (target float32, draft bf16 where bf16 is fast): the
    float32 features reach the bf16 draft cast, the draft's blocks are verified by the float32 target,
    and every request's tokens equal plain float32 greedy's. Mutation run once: the cast in
    ``DSparkDraftModel.project_context`` removed (``context_features.to(self.fc.weight.dtype)`` ->
    ``context_features``): fails (dtype mismatch in the draft's projection)."""
    draft = fixture_draft().to(torch.bfloat16)
    prompts = prompts_of([4, 10, 15], seed=29)
    assert run(target, draft, prompts) == plain_greedy(target, prompts, NEW)
    assert sum(len(s.rounds) for s in draft.last_batch_telemetry.steps) > 0


def test_load_benchmark_dtypes(monkeypatch):
    """``serving_dtypes``: float32 target unless bf16 is asked for; the draft in bf16 exactly where bf16
    matmuls are fast. Mutation run once: the draft's dtype taken from the target's (float32 always):
    fails on the fast-bf16 case."""
    from dspark_hf import precision
    from dspark_hf.cli.bench_concurrency import serving_dtypes

    monkeypatch.setattr(precision, "bf16_is_fast", lambda device="cpu": True)
    assert serving_dtypes("auto", "cpu") == (torch.float32, torch.bfloat16)
    assert serving_dtypes("float32", "cpu") == (torch.float32, torch.bfloat16)
    assert serving_dtypes("bfloat16", "cpu") == (torch.bfloat16, torch.bfloat16)
    monkeypatch.setattr(precision, "bf16_is_fast", lambda device="cpu": False)
    assert serving_dtypes("auto", "cpu") == (torch.float32, torch.float32)
