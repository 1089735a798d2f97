"""Every verification policy keeps greedy generation exact (tiny Qwen3 target, the fixture drafts,
float32), with drafts forced towards the target's continuation so that partial acceptance happens;
the policies' decisions on hand-worked confidences; the missing-profile options; online estimates."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.errors import UnsupportedUsageError
from dspark_hf.verification.scheduling import CostProfile, ProfileMissingError, SlotAcceptanceEstimator
from dspark_hf.telemetry import StepRecord
from dspark_hf.verification.policies import (
    POLICIES, ConfidenceThreshold, FixedLength, HardwareAware, OnlineAcceptance, SurvivalThreshold, WholeBlock,
    resolve_policy,
)
from test_generate_greedy_tiny import force_towards

NEW_TOKENS = 40


def linear_profile(per_token: float = 0.3) -> CostProfile:
    tokens = list(range(1, 17))
    return CostProfile(model="tiny", device="test", dtype="float32", tokens=tokens,
                       target_seconds=[1.0 + per_token * (b - 1) for b in tokens])


def policies():
    return [
        "whole", "fixed:0", "fixed:2", "threshold:0.5", "survival:0.3",
        HardwareAware(profile=linear_profile()), OnlineAcceptance(profile=linear_profile(0.15)),
    ]


@pytest.mark.parametrize("draft_name", ["qwen3_dspark_vanilla", "qwen3_dspark_gated", "qwen3_dflash"])
def test_greedy_equality_under_every_policy(draft_name):
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / draft_name, dtype=torch.float32).eval()
    ids = torch.randint(5, 300, (1, 11), generator=torch.Generator().manual_seed(5))
    plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    force_towards(draft, plain[0])
    seen_lengths = set()
    for policy in policies():
        config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, dspark_policy=policy)
        out = target.generate(ids, assistant_model=draft, generation_config=config)
        assert torch.equal(out, plain), f"{policy} changed the greedy output"
        steps = draft.last_telemetry.steps
        assert all(0 <= s.accepted <= s.verified <= s.proposed for s in steps)
        seen_lengths |= {s.verified for s in steps}
        if policy == "fixed:2":
            assert {s.verified for s in steps[:-1]} == {2}
    assert len(seen_lengths) >= 3


def test_policy_decisions_on_hand_worked_confidences():
    c = torch.tensor([0.9, 0.8, 0.5, 0.9])  # a = 0.9, 0.72, 0.36, 0.324
    assert WholeBlock().verify_length(c, 4) == 4
    assert FixedLength(2).verify_length(c, 4) == 2 and FixedLength(9).verify_length(c, 4) == 4
    assert ConfidenceThreshold(0.6).verify_length(c, 4) == 2
    assert SurvivalThreshold(0.7).verify_length(c, 4) == 2
    assert SurvivalThreshold(0.3).verify_length(c, 4) == 4
    assert SurvivalThreshold(0.35).verify_length(c, 4) == 3
    assert SurvivalThreshold(0.5).verify_length(None, 4) == 4
    # Hardware-aware with time 1 + 0.3 (B - 1): theta = 1, 1.9/1.3 = 1.46, 2.62/1.6 = 1.64,
    # 2.98/1.9 = 1.57 < 1.64: stop at L = 2.
    hw = HardwareAware(profile=linear_profile(0.3))
    hw.profile = hw._given_profile
    assert hw.verify_length(c, 4) == 2


def test_survival_applies_stored_temperatures():
    policy = SurvivalThreshold(0.5)
    c = torch.tensor([0.8, 0.8])  # a = 0.8, 0.64 -> L = 2 uncalibrated
    assert policy.verify_length(c, 2) == 2
    policy.temperatures = [1.0, 0.25]  # sharpen slot 2: sigmoid(4 logit(0.8)) = 0.996 -> still 2
    assert policy.verify_length(c, 2) == 2
    policy.temperatures = [4.0, 1.0]  # soften slot 1: sigmoid(logit(0.8) / 4) = 0.585; a_2 = 0.468 -> 1
    assert policy.verify_length(c, 2) == 1


def test_spec_strings_and_errors():
    assert isinstance(resolve_policy("fixed:3"), FixedLength) and resolve_policy("fixed:3").length == 3
    assert resolve_policy("survival:0.25").threshold == 0.25
    assert resolve_policy("hardware").on_missing == "profile"
    assert resolve_policy("hardware:whole").on_missing == "whole"
    assert resolve_policy("hardware").use_gate and not resolve_policy("hardware:always-draft").use_gate
    both = resolve_policy("hardware:whole,always-draft")
    assert both.on_missing == "whole" and not both.use_gate and repr(both) == "HardwareAware(on_missing='whole', gate=False)"
    assert isinstance(resolve_policy("online:error"), OnlineAcceptance)
    assert set(POLICIES) >= {"whole", "threshold", "fixed", "survival", "hardware", "online"}
    for bad in ("hardware:sometimes", "fixed:-1", "fixed:1.5", "survival:2", "threshold:x", "nope"):
        with pytest.raises(UnsupportedUsageError):
            resolve_policy(bad)


def test_missing_profile_options(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    target = tiny_qwen3_target()
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    ids = torch.randint(5, 300, (1, 9), generator=torch.Generator().manual_seed(6))
    plain = target.generate(ids, max_new_tokens=12, do_sample=False)

    def run(policy):
        config = GenerationConfig(max_new_tokens=12, do_sample=False, dspark_policy=policy)
        return target.generate(ids, assistant_model=draft, generation_config=config)

    with pytest.raises(ProfileMissingError, match="dspark profile"):
        run("hardware:error")
    assert torch.equal(run("hardware:whole"), plain)
    assert draft.last_telemetry.steps[0].verified == draft.config.block_size  # whole block, not scheduled
    assert "No cost profile" in capsys.readouterr().err
    assert torch.equal(run("hardware"), plain)  # profiles now, stores, then schedules
    stored = list((tmp_path / "profiles").glob("*.json"))
    assert len(stored) == 1 and "qwen3" in stored[0].name and "float32" in stored[0].name
    assert "Profiling now" in capsys.readouterr().err
    assert torch.equal(run("hardware:error"), plain)  # found this time
    assert capsys.readouterr().err == ""


def test_online_estimates_follow_outcomes():
    est = SlotAcceptanceEstimator(3, prior_mean=0.5, prior=2.0, decay=1.0)
    assert est.estimates() == [0.5, 0.5, 0.5]
    est.update(verified=3, accepted=1)  # slot 0 accepted, slot 1 rejected, slot 2 not reached
    est.update(verified=3, accepted=3)
    est.observe(StepRecord(0, 3, 2, 2, 3, None, 0.0, 0.0))  # slots 0, 1 accepted; slot 2 not verified
    assert est.estimates() == pytest.approx([(3 + 1) / (3 + 2), (2 + 1) / (3 + 2), (1 + 1) / (1 + 2)])
    decaying = SlotAcceptanceEstimator(1, decay=0.8)
    for _ in range(30):
        decaying.update(1, 0)
    for _ in range(30):
        decaying.update(1, 1)
    assert decaying.estimates()[0] > 0.8  # recent rounds dominate: (5 + 1) / (5 + 2) in the limit


def test_online_policy_explores_and_learns_without_confidences():
    policy = OnlineAcceptance(profile=linear_profile(0.3), explore_every=4)
    policy.profile = policy._given_profile
    policy.estimator = SlotAcceptanceEstimator(4)
    lengths = []
    for _ in range(40):
        length = policy.verify_length(None, 4)
        lengths.append(length)
        accepted = min(length, 2)  # slots 0 and 1 always right, slot 2 always wrong
        policy.observe(StepRecord(0, 4, length, accepted, accepted + 1, None, 0.0, 1.0 + 0.3 * length))
    assert lengths[0] == 4 and lengths[4] == 4  # scheduled exploration rounds
    assert lengths[-2] == 2, lengths  # learned: verify the two reliable slots
