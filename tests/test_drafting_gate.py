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
    drafting; rounds that deliver fewer make the gate skip. Mutation run once: ``drafting_ahead``
    comparing with ``<=`` instead of ``>=`` skips after the first winning rounds and fails."""
    gate = DraftingGate(PLAIN, warmup=4)
    for _ in range(20):  # 2 tokens in 0.15 s: 13.3 tokens/s against plain 10
        _drafting_round(gate, 2, 0.15)
    assert gate.should_draft()
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
    """The plain-step cost follows the measured plain steps (seconds per token), starting from the profile's."""
    gate = DraftingGate(1.0, warmup=0, smoothing=0.5)
    gate.observe(False, 1, 0.2)
    assert gate.plain_seconds == pytest.approx(0.6)
    gate.observe(False, 2, 0.2)
    assert gate.plain_seconds == pytest.approx(0.35)


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
    is still plain greedy's. ``gate=False`` drafts every round. Mutation run once: ``should_draft``
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
        config = GenerationConfig(max_new_tokens=48, do_sample=False, dspark_policy=HardwareAware(profile, gate=gate))
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
    call keeps its measured averages while exploration starts again at ``explore_every``."""
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


def test_gate_is_carried_to_the_next_generate_call(monkeypatch):
    """A second ``generate()`` with the same draft starts from the first call's measurements: with a
    gate whose averages never move (smoothing 0) and a plain step of 1 microsecond, the first call drafts
    its 8 warm-up rounds, the second call skips from its first round (7 plain steps, then a forced
    exploration round); the output stays plain greedy's. Mutation run once: ``kept_gate`` making a new
    gate on every call: fails (the second call drafts its first 8 rounds again)."""
    from dspark_hf.verification.scheduling import drafting_gate
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    real = drafting_gate.DraftingGate
    monkeypatch.setattr(drafting_gate, "DraftingGate", lambda plain: real(plain, smoothing=0.0))
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    tokens = list(range(1, 2 * draft.config.block_size + 3))
    profile = CostProfile(model="synthetic", device="test", dtype="float32", tokens=tokens,
                          target_seconds=[1e-6 * b for b in tokens], draft_seconds=1e-6)
    ids = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7]])
    plain = target.generate(ids, max_new_tokens=24, do_sample=False, attention_mask=torch.ones_like(ids))
    drafted = []
    for _ in range(2):
        config = GenerationConfig(max_new_tokens=24, do_sample=False, dspark_policy=HardwareAware(profile))
        out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        assert torch.equal(out, plain)
        drafted.append([s.proposed > 0 for s in draft.last_telemetry.steps])
    assert all(drafted[0][:8]), drafted[0]
    assert drafted[1][:8] == [False] * 7 + [True], drafted[1]
