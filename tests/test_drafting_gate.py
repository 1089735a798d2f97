"""Rounds that skip drafting (batch 1): the gate's decisions (:mod:`dspark_hf.verification.scheduling.drafting_gate`)
and the candidate generator's plain steps, whose features the draft still receives at its next round."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.integration.target_features import TargetFeatureTap
from dspark_hf.verification.policies import HardwareAware, WholeBlock
from dspark_hf.verification.scheduling.drafting_gate import DraftingGate
from test_generate_greedy_tiny import force_towards

PLAIN = 0.1  # seconds per plain step


def _drafting_round(gate, emitted, seconds):
    assert gate.should_draft()
    gate.observe(True, emitted, seconds)


def _skips_until_forced(gate) -> int:
    """Plain steps the gate takes before it forces a drafting round (which the caller then observes)."""
    skipped = 0
    while not gate.should_draft():
        gate.observe(False, 1, PLAIN)
        skipped += 1
        assert skipped < 1000
    return skipped


def test_gate_drafts_while_drafting_is_ahead_and_skips_when_behind():
    """Warm-up rounds always draft; rounds that deliver more tokens per second than plain steps keep
    drafting (but for a plain probe); rounds that deliver fewer make the gate skip. Mutation run once: ``drafting_ahead``
    comparing with ``<=`` instead of ``>=`` skips after the first winning rounds and fails."""
    gate = DraftingGate(PLAIN, warmup=4)  # 2 tokens in 0.15 s: 13.3 tokens/s against plain 10
    assert _decisions(gate, 20, (2, 0.15), PLAIN) == "D" * 8 + "p" + "D" * 11  # one plain probe (below)
    assert gate.drafting_ahead()
    gate = DraftingGate(PLAIN, warmup=4)
    for _ in range(4):  # 1 token in 0.12 s: 8.3 tokens/s
        _drafting_round(gate, 1, 0.12)
    assert not gate.should_draft()


def test_exploration_interval_doubles_while_forced_rounds_lose_and_resets_when_one_wins():
    """Skipped runs of 7, 15, 31, 63, 63 plain steps between forced drafting rounds that lose (interval 8
    doubling to 64); a forced round that wins brings drafting back at once and the interval back to 8.
    Mutation run once: not doubling the interval gives runs of 7, 7, 7 and fails."""
    gate = DraftingGate(PLAIN, warmup=2, explore_every=8, explore_max=64, smoothing=0.5)
    for _ in range(2):
        _drafting_round(gate, 1, 0.2)  # 5 tokens/s: behind
    runs = []
    for _ in range(5):
        runs.append(_skips_until_forced(gate))
        gate.observe(True, 1, 0.2)
    assert runs == [7, 15, 31, 63, 63]
    assert _skips_until_forced(gate) == 63
    for _ in range(3):  # forced rounds that win (8 tokens in 0.2 s) pull the average above plain
        gate.observe(True, 8, 0.2)
        if gate.drafting_ahead():
            break
        _skips_until_forced(gate)
    assert gate.drafting_ahead() and gate.explore_every == 8 and gate.should_draft()


def test_plain_steps_update_the_plain_estimate():
    """The first measured plain step replaces the profile's estimate (seconds per token); later ones are
    averaged in; an estimate marked as measured is averaged into from the first. Mutation run once: the
    first measurement averaged into the profile's estimate: fails (0.6 instead of 0.2)."""
    gate = DraftingGate(1.0, warmup=0, smoothing=0.5)
    gate.observe(False, 1, 0.2)
    assert gate.plain_seconds == pytest.approx(0.2)  # not averaged with 1.0
    gate.observe(False, 2, 0.2)
    assert gate.plain_seconds == pytest.approx(0.15)
    measured = DraftingGate(0.3, warmup=0, smoothing=0.5, plain_measured=True)
    measured.observe(False, 1, 0.2)
    assert measured.plain_seconds == pytest.approx(0.25)


def test_measure_plain_prices_a_plain_step_without_counting_it_as_the_gates_own():
    """``measure_plain`` (a plain step the gate did not choose: every request of a batch declined to draft)
    moves the plain estimate as ``observe(False, ...)`` does, but leaves the rounds in a row, the exploration
    interval and a pending probe alone. Mutation run once: ``measure_plain`` calling ``observe(False, ...)``:
    fails (the drafted-in-a-row count drops to 0)."""
    gate = DraftingGate(1.0, warmup=0, smoothing=0.5)
    for _ in range(3):
        _drafting_round(gate, 2, 0.1)
    gate.measure_plain(1, 0.2)
    assert gate.plain_seconds == pytest.approx(0.2) and gate.plain_rounds == 1
    gate.measure_plain(2, 0.2)
    assert gate.plain_seconds == pytest.approx(0.15) and gate.plain_rounds == 2
    assert gate.drafted_in_a_row == 3 and gate.skipped_in_a_row == 0
    gate.measure_plain(0, 0.2)  # nothing emitted: nothing to price
    assert gate.plain_rounds == 2


def _decisions(gate, rounds, drafting, plain):
    """``rounds`` decisions of ``gate`` when a drafting round delivers ``drafting`` = (tokens, seconds)
    and a plain step takes ``plain`` seconds: a string of 'D' (drafted) and 'p' (plain)."""
    out = []
    for _ in range(rounds):
        if gate.should_draft():
            gate.observe(True, *drafting)
            out.append("D")
        else:
            gate.observe(False, 1, plain)
            out.append("p")
    return "".join(out)


def test_plain_probes_measure_the_plain_side_while_drafting_is_ahead():
    """A gate whose drafting is ahead of the profile's plain estimate still takes a plain probe after its
    warm-up (8 rounds) and then after 16, 32, 64, 64 drafting rounds in a row while probes lose (drafting at
    13.3 tokens/s against plain steps measured at 10); when the profile's estimate was pessimistic (0.1 s
    a plain step where the machine does one in 0.05 s), the first probe shows it and the gate switches to
    plain steps, exploring drafting from there. Mutation run once: no probes (``should_draft`` drafting
    whenever drafting is ahead): fails both (no 'p' at all; drafting forever at 13.3 against 20)."""
    gate = DraftingGate(PLAIN, warmup=8)
    decisions = _decisions(gate, 8 + 1 + 16 + 1 + 32 + 1 + 64 + 1 + 64 + 1, (2, 0.15), PLAIN)
    runs = [len(r) for r in decisions.split("p")]
    assert runs == [8, 16, 32, 64, 64, 0], decisions
    slow_profile = DraftingGate(PLAIN, warmup=8)  # the machine's plain step: 0.05 s
    decisions = _decisions(slow_profile, 40, (2, 0.15), 0.05)
    assert decisions.startswith("D" * 8 + "p" * 7 + "D"), decisions
    assert decisions.count("D") <= 8 + 4


def test_a_seeded_gate_decides_at_once():
    """``seed`` gives a new gate estimated drafting rounds counted as its warm-up, so it skips or drafts
    from its first round against its own plain estimate; ``measured_tokens_per_round`` is ``None`` until
    the warm-up rounds are measured. Mutation run once: ``seed`` leaving ``drafting_rounds`` at 0: fails
    (the behind seed still drafts through a warm-up)."""
    gate = DraftingGate(PLAIN, warmup=2)
    assert gate.measured_tokens_per_round() is None
    _decisions(gate, 2, (2, 0.15), PLAIN)
    assert gate.measured_tokens_per_round() == pytest.approx(2)
    fresh = DraftingGate(0.1)  # plain: 10 tokens/s
    fresh.seed(1.0, 0.12)  # drafting: 8.3 tokens/s
    assert not fresh.should_draft()
    fresh = DraftingGate(0.1)
    fresh.seed(1.5, 0.12)  # 12.5 tokens/s
    assert fresh.should_draft() and fresh.drafting_ahead() and fresh.drafting_rounds >= fresh.warmup


class ScriptedSkips(WholeBlock):
    """Whole-block verification that skips drafting on the listed rounds (0-based)."""

    def __init__(self, skipped):
        self.skipped = set(skipped)
        self.round = -1

    def should_draft(self):
        self.round += 1
        return self.round not in self.skipped


def test_skipped_rounds_are_plain_steps_and_the_draft_gets_every_position_features():
    """Greedy output stays identical to plain ``generate`` (float32) with runs of skipped rounds, the
    skipped rounds are recorded with ``proposed == 0``, and at every drafting round the draft's new
    context rows are exactly the target's layer outputs at those positions (compared with one full
    forward of the final sequence, to 1e-4: cached and uncached forwards round differently), skipped
    positions included. Mutation run once: keeping only the latest forward's features (no carry) fails
    with draft_round's one-line "needs the features of positions" error."""
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7]])
    plain = target.generate(ids, max_new_tokens=40, do_sample=False, attention_mask=torch.ones_like(ids))
    calls = force_towards(draft, plain[0])  # partial acceptance of every length
    policy = ScriptedSkips({1, 2, 4, 5, 6, 9})
    config = GenerationConfig(max_new_tokens=40, do_sample=False, dspark_policy=policy)
    out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
    assert torch.equal(out, plain)
    steps = draft.last_telemetry.steps
    assert [i for i, s in enumerate(steps) if s.proposed == 0][:6] == [1, 2, 4, 5, 6, 9]
    assert all(s.verified == 0 and s.emitted == 1 for s in steps if s.proposed == 0)
    assert sum(s.accepted for s in steps) > 0

    tap = TargetFeatureTap(target, draft.config.target_layer_ids)
    try:
        with torch.no_grad():
            target(input_ids=out)
        reference = tap.features()[0]
    finally:
        tap.close()
    covered = []
    for call in calls:
        rows = call["features"].shape[1]
        positions = call["positions"][0, :rows].tolist()
        covered += positions
        torch.testing.assert_close(call["features"][0], reference[positions], atol=1e-4, rtol=1e-4)
    assert covered == list(range(len(covered)))  # every position once, in order, skipped rounds' too
    assert max(c["features"].shape[1] for c in calls[1:]) >= 4  # a round after skips carried several rows


def test_hardware_policy_skips_drafting_when_rounds_lose_and_output_stays_identical():
    """The hardware-aware policy on a profile whose plain step is nearly free next to a real drafting round
    (1 microsecond): after its warm-up it skips drafting, forced exploration rounds aside, and the output
    is still plain greedy's. ``gate=False`` drafts every round. (Lookup rounds off: they would take the place
    of plain steps; tests/test_lookup_rounds.py covers them.) Mutation run once: ``should_draft``
    returning True always fails the skip count."""
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    tokens = list(range(1, 2 * draft.config.block_size + 3))
    profile = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                          target_seconds=[1e-6 * b for b in tokens], draft_seconds=1e-6)
    ids = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7]])
    plain = target.generate(ids, max_new_tokens=48, do_sample=False, attention_mask=torch.ones_like(ids))
    for gate in (True, False):
        config = GenerationConfig(max_new_tokens=48, do_sample=False, dspark_policy=HardwareAware(profile, gate=gate, lookup=False))
        out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        assert torch.equal(out, plain)
        skipped = draft.last_telemetry.skipped_rounds
        if gate:
            # 8 warm-up rounds, then plain steps with one forced drafting round per 8 (interval doubling)
            assert skipped >= 30, draft.last_telemetry.summary()
            assert "steps without drafting" in draft.last_telemetry.summary()
        else:
            assert skipped == 0


def test_start_call_keeps_the_averages_and_restarts_exploration():
    """``kept_gate`` returns the stored gate for the same key (a new one for another key), and a new
    call keeps its measured averages and its probe interval while exploration starts again at
    ``explore_every``; a gate over a batch (``explore_per_call=False``) keeps its exploration interval too.
    Mutations run once: ``start_call`` resetting ``probe_every`` fails the probe assertion; ignoring
    ``explore_per_call`` fails the batch gate's."""
    from dspark_hf.verification.scheduling.drafting_gate import kept_gate

    class Owner:
        pass

    owner = Owner()
    gate = kept_gate(owner, "a", lambda: DraftingGate(PLAIN, warmup=1, smoothing=0.5))
    _drafting_round(gate, 1, 0.2)  # behind
    assert _skips_until_forced(gate) == 7
    gate.observe(True, 1, 0.2)
    assert gate.explore_every == 16
    again = kept_gate(owner, "a", lambda: DraftingGate(PLAIN))
    assert again is gate and gate.explore_every == 8 and gate.drafting_rounds == 2 and not gate.drafting_ahead()
    assert kept_gate(owner, "b", lambda: DraftingGate(PLAIN)) is not gate

    ahead = kept_gate(owner, "c", lambda: DraftingGate(PLAIN, warmup=1, smoothing=0.5))
    decisions = _decisions(ahead, 1 + 8 + 1 + 16 + 1, (2, 0.15), PLAIN)  # probes after 8 and 16 drafting rounds
    assert decisions.count("p") == 2 and ahead.probe_every == 32, decisions
    kept_gate(owner, "c", lambda: DraftingGate(PLAIN))
    assert ahead.probe_every == 32  # the next call probes after 32 drafting rounds, not 8
    assert _decisions(ahead, 33, (2, 0.15), PLAIN) == "D" * 32 + "p"

    batch = kept_gate(owner, "d", lambda: DraftingGate(PLAIN, warmup=1, smoothing=0.5, explore_per_call=False))
    _drafting_round(batch, 1, 0.2)
    assert _skips_until_forced(batch) == 7
    batch.observe(True, 1, 0.2)
    assert kept_gate(owner, "d", lambda: DraftingGate(PLAIN)) is batch and batch.explore_every == 16
    assert _skips_until_forced(batch) == 15


def test_gate_is_carried_to_the_next_generate_call(monkeypatch):
    """A second ``generate()`` with the same draft starts from the first call's measurements: with a
    gate whose averages never move (smoothing 0) and a plain step of 1 microsecond, the first call drafts
    its 8 warm-up rounds, the second call skips from its first round (7 plain steps, then a forced
    exploration round); the output stays plain greedy's (lookup rounds off, as they would replace plain
    steps). Mutation run once: ``kept_gate`` making a new
    gate on every call: fails (the second call drafts its first 8 rounds again)."""
    from dspark_hf.verification.scheduling import drafting_gate
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    real = drafting_gate.DraftingGate
    monkeypatch.setattr(drafting_gate, "DraftingGate", lambda plain: real(plain, smoothing=0.0, plain_measured=True))
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    tokens = list(range(1, 2 * draft.config.block_size + 3))
    profile = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                          target_seconds=[1e-6 * b for b in tokens], draft_seconds=1e-6)
    ids = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7]])
    plain = target.generate(ids, max_new_tokens=24, do_sample=False, attention_mask=torch.ones_like(ids))
    drafted = []
    for _ in range(2):
        config = GenerationConfig(max_new_tokens=24, do_sample=False, dspark_policy=HardwareAware(profile, lookup=False))
        out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        assert torch.equal(out, plain)
        drafted.append([s.proposed > 0 for s in draft.last_telemetry.steps])
    assert all(drafted[0][:8]), drafted[0]
    assert drafted[1][:8] == [False] * 7 + [True], drafted[1]


def test_a_new_request_count_starts_from_the_nearest_measured_count():
    """The batched step gates (``Speculation.step_gate``, one per number of decoding requests): a count
    met for the first time is seeded from the nearest count with a measured ratio (same profile), so it
    skips at once next to a count where drafting lost and drafts next to one where it won (on a flat
    curve, where the neighbour's tokens per request decide); a gate of another profile (dtype) is never used. Mutation run once: ``_measured_neighbours`` sorted farthest
    first: fails (count 5 seeded from count 2)."""
    from types import SimpleNamespace

    from dspark_hf.batching.speculation import Speculation
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    tokens = list(range(1, 40))
    flat = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens, target_seconds=[0.1 for _ in tokens])
    other = CostProfile(model="synthetic", device="test", dtype="bfloat16", tokens=tokens, target_seconds=[0.1 for _ in tokens])

    def speculation(profile):
        spec = Speculation.__new__(Speculation)
        spec.draft, spec.steps_per_second, spec.packed_profile, spec.step_gates = draft, None, None, {}
        spec._drafting = {}
        spec.policy = HardwareAware(profile=profile)
        spec.policy.profile = profile
        return spec

    draft = SimpleNamespace()
    spec = speculation(flat)
    for count, drafting in ((2, (9, 0.15)), (6, (1, 0.5))):  # count 2: drafting ahead; count 6: behind
        gate = spec.step_gate(count)
        for _ in range(30):  # count 6 starts seeded from count 2: 30 rounds outweigh the seed
            gate.observe(True, *drafting)
        gate.observe(False, count, 0.1)
    assert spec.step_gate(2).drafting_ratio() > 1 > spec.step_gate(6).drafting_ratio()
    assert not spec.step_gate(5).should_draft()  # nearest measured: 6
    assert spec.step_gate(3).should_draft() and spec.step_gate(3).drafting_rounds >= 8  # nearest: 2, seeded
    fresh = speculation(other).step_gate(5)
    assert fresh.drafting_rounds == 0 and fresh is not spec.step_gate(5)


def test_a_new_request_count_is_seeded_on_its_own_cost_curve():
    """What the load benchmark met at concurrency 2 on this CPU: one request's drafting rounds measured
    behind its plain steps (1.06 tokens in 74 ms against 66 ms per plain token: the draft missed that
    prompt), and the packed curves of 1 request (1 row 66 ms, 2 rows 53 ms) and 2 requests (a plain step
    of 2 rows 110 ms, a step verifying one slot each, 4 rows, 74 ms). The gate for 2 requests takes the
    neighbour's tokens per request (1.06) and prices its drafting step on its own curve (74 ms + 2 x 7 ms
    of drafting: 24 tokens/s against 18 for plain steps), so it drafts from its first step.
    Mutation run once: seeding by the neighbour's drafting/plain ratio (the rule before 2026-12-04, run e):
    fails (ratio 0.94: the gate for 2 requests skipped drafting, 24 of 60 steps plain in the traced run)."""
    from types import SimpleNamespace

    from dspark_hf.batching.packed_profile import PackedCostProfile
    from dspark_hf.batching.speculation import Speculation
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    def curve(seconds):
        return CostProfile(model="synthetic", device="test", dtype="float32", tokens=sorted(seconds),
                           target_seconds=[seconds[b] for b in sorted(seconds)])

    packed = PackedCostProfile({1: curve({1: 0.066, 2: 0.053, 4: 0.071}), 2: curve({2: 0.110, 4: 0.074, 8: 0.110})})
    spec = Speculation.__new__(Speculation)
    spec.draft, spec.steps_per_second, spec.packed_profile, spec.step_gates = SimpleNamespace(), None, packed, {}
    spec._drafting = {1: [0.007]}  # one drafting call for one request measured
    spec.policy = HardwareAware(profile=packed.curves[1])
    spec.policy.profile = packed.curves[1]
    one = spec.step_gate(1)
    for _ in range(one.warmup):
        one.observe(True, 1.06, 0.074)
    one.observe(False, 1, 0.066)
    assert one.drafting_ratio() < 1 and not one.should_draft()
    two = spec.step_gate(2)
    assert two.drafting_rounds >= two.warmup and two.should_draft()
    assert two.draft_tokens == pytest.approx(2.12) and two.draft_seconds == pytest.approx(0.074 + 2 * 0.007)


def test_one_slow_round_does_not_hold_the_gate_and_a_lasting_change_does():
    """Seconds are averaged robustly: a first drafting round 100x slower than the rest (a kernel's or
    probe's first use, as met on an Intel Xeon: 11.5 s against ~0.1 s) leaves the drafting cost at the
    normal rounds' once they are the majority of the window, so drafting that wins (2 tokens in 0.12 s
    against 10 tokens/s plain) drafts after the warm-up, and a slow plain step does not make plain look
    slow; a cost that rises for good (5x) counts once it holds the window's median, wholly after 9 rounds. Mutation run once: the exponential
    average of seconds (``draft_seconds`` and ``plain_seconds`` smoothed with weight ``smoothing``, before
    2026-12-06): fails (drafting cost 2.6 s per round after the warm-up, not 0.12)."""
    gate = DraftingGate(PLAIN, warmup=8)
    gate.observe(True, 2, 12.0)
    for _ in range(7):
        gate.observe(True, 2, 0.12)
    assert gate.draft_seconds == pytest.approx(0.12) and gate.drafting_ahead()
    gate.observe(False, 1, 5.0)  # the first measured plain step replaces the profile's estimate...
    for _ in range(4):
        gate.observe(False, 1, PLAIN)
    assert gate.plain_seconds == pytest.approx(PLAIN)  # ...and a slow one is outvoted by the next ones
    for _ in range(5):
        gate.observe(True, 2, 0.6)  # the machine got 5x slower for drafting rounds: counted once they hold
    assert gate.draft_seconds == pytest.approx((4 * 0.12 + 5 * 0.6) / 9)  # the median of the 9-round window
    for _ in range(4):
        gate.observe(True, 2, 0.6)
    assert gate.draft_seconds == pytest.approx(0.6)


def test_recent_seconds_leaves_out_values_far_above_the_median():
    """:class:`RecentSeconds`: the mean of the window without values above 3x its lower median; a window
    of one follows the latest value; ``None`` never moves. Mutation run once: the bound taken from the
    upper median (``ordered[len(ordered) // 2]``): fails (a window of 0.1 and 12 keeps the 12)."""
    from dspark_hf.verification.scheduling.drafting_gate import RecentSeconds

    recent = RecentSeconds(9, 12.0)
    recent.add(0.1)
    assert recent.value == pytest.approx(0.1)
    for value in (0.2, 0.3, 0.29):
        recent.add(value)
    assert recent.value == pytest.approx((0.1 + 0.2 + 0.3 + 0.29) / 4)  # 0.3 <= 3 x 0.2: kept
    one = RecentSeconds(1, 1.0)
    one.add(5.0)
    assert one.value == 5.0
    frozen = RecentSeconds(None, 1.0)
    frozen.add(5.0)
    assert frozen.value == 1.0
