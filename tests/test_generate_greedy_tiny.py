"""Greedy speculative generation equals plain generation, token for token, in float32.

Tiny random Qwen3 and Gemma3 targets shaped like the fixtures' pretend targets, with the fixture
drafts. A random draft is almost never accepted, so each case also runs with an "oracle" draft whose
base logits are pushed towards the target's own greedy continuation except at scheduled slots: the
target then accepts partial blocks of every length, which exercises acceptance, the draft's context
cache and the feature bookkeeping, and equality must still hold.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, tiny_gemma3_target, tiny_qwen3_target
from dspark_hf import DSparkDraft

NEW_TOKENS = 48
CASES = [
    ("qwen3", "qwen3_dspark_vanilla"),
    ("qwen3", "qwen3_dspark_gated"),
    ("qwen3", "qwen3_dspark_rnn"),
    ("qwen3", "qwen3_dflash"),
    ("gemma3", "gemma4_dspark_vanilla"),
]
TARGETS = {"qwen3": tiny_qwen3_target, "gemma3": tiny_gemma3_target}
POLICIES = ["whole", "threshold:0.5"]


def load_draft(name: str) -> DSparkDraft:
    return DSparkDraft.from_pretrained(FIXTURES_DIR / name, dtype=torch.float32).eval()


def force_towards(draft: DSparkDraft, continuation: torch.Tensor, wrong_every: int = 3) -> list[dict]:
    """Make the draft propose ``continuation[pos + 1]`` for the slot at position ``pos``, except at
    slots where ``(pos + k) % wrong_every == 0``; record every call's inputs."""
    original = draft.forward
    calls: list[dict] = []

    def forward(**kwargs):
        out = original(**kwargs)
        q_len = kwargs["input_ids"].shape[1]
        positions = kwargs["position_ids"][0, -q_len:]
        for k, pos in enumerate(positions.tolist()):
            if pos + 1 < continuation.shape[0]:
                token = int(continuation[pos + 1])
                if (pos + k) % wrong_every == 0:
                    token = (token + 1) % out.logits.shape[-1]
                out.logits[0, k, token] += 1e4
        calls.append({"features": kwargs["context_features"], "positions": kwargs["position_ids"], "q_len": q_len})
        return out

    draft.forward = forward
    return calls


def speculative(target, ids, draft, policy):
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, dspark_policy=policy)
    return target.generate(ids, assistant_model=draft, generation_config=config)


@pytest.mark.parametrize("target_kind,draft_name", CASES)
@pytest.mark.parametrize("policy", POLICIES)
def test_random_draft_greedy_equality(target_kind, draft_name, policy):
    target = TARGETS[target_kind]()
    draft = load_draft(draft_name)
    for seed in range(2):
        ids = torch.randint(5, 300, (1, 9 + 5 * seed), generator=torch.Generator().manual_seed(seed))
        plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert torch.equal(speculative(target, ids, draft, policy), plain)
        telemetry = draft.last_telemetry
        assert telemetry.new_tokens == plain.shape[1] - ids.shape[1]


@pytest.mark.parametrize("target_kind,draft_name", CASES)
@pytest.mark.parametrize("policy", POLICIES)
def test_oracle_draft_greedy_equality_and_acceptance(target_kind, draft_name, policy):
    target = TARGETS[target_kind]()
    draft = load_draft(draft_name)
    ids = torch.randint(5, 300, (1, 11), generator=torch.Generator().manual_seed(1))
    plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    force_towards(draft, plain[0])
    assert torch.equal(speculative(target, ids, draft, policy), plain)
    steps = draft.last_telemetry.steps
    if policy == "whole":
        # Forced proposals are right until the first scheduled wrong slot: blocks are partly accepted.
        assert draft.last_telemetry.tau > 1.5
        assert {s.accepted for s in steps} - {0} , "no draft token was ever accepted"
        assert all(s.accepted < s.verified for s in steps[:-1]), "a scheduled wrong slot was accepted"
    assert all(s.accepted <= s.verified <= s.proposed == draft.config.block_size for s in steps)


@pytest.mark.parametrize("target_kind,draft_name", [CASES[0], CASES[-1]])
def test_context_features_are_the_targets_layer_outputs(target_kind, draft_name):
    """The rows fed to the draft, round after round, are the target's hidden_states[l + 1] of the
    committed positions, in order, each position once."""
    target = TARGETS[target_kind]()
    draft = load_draft(draft_name)
    ids = torch.randint(5, 300, (1, 10), generator=torch.Generator().manual_seed(2))
    plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    calls = force_towards(draft, plain[0])
    out = speculative(target, ids, draft, "whole")
    features = torch.cat([c["features"] for c in calls], dim=1)
    positions = torch.cat([c["positions"][:, : c["positions"].shape[1] - c["q_len"]] for c in calls], dim=1)
    assert torch.equal(positions[0], torch.arange(features.shape[1]))
    with torch.no_grad():
        hidden = target(out, output_hidden_states=True).hidden_states
    expected = torch.cat([hidden[i + 1] for i in draft.config.target_layer_ids], dim=-1)[:, : features.shape[1]]
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_telemetry_and_callback_agree():
    target = tiny_qwen3_target()
    draft = load_draft("qwen3_dspark_vanilla")
    ids = torch.randint(5, 300, (1, 8), generator=torch.Generator().manual_seed(3))
    plain = target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    force_towards(draft, plain[0])
    seen = []
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, dspark_callback=seen.append)
    out = target.generate(ids, assistant_model=draft, generation_config=config)
    telemetry = draft.last_telemetry
    assert seen == telemetry.steps and len(seen) > 0
    assert telemetry.prefill_tokens + sum(s.emitted for s in seen) == out.shape[1] - ids.shape[1]
    assert all(len(s.confidences) == draft.config.block_size and all(0 < c < 1 for c in s.confidences) for s in seen)
    assert [s.step for s in seen] == list(range(len(seen)))


def test_per_draft_default_policy_is_used():
    target = tiny_qwen3_target()
    draft = load_draft("qwen3_dspark_vanilla")
    draft.verification_policy = "threshold:1.0"  # no confidence reaches 1: nothing is verified
    ids = torch.randint(5, 300, (1, 8), generator=torch.Generator().manual_seed(4))
    out = target.generate(ids, assistant_model=draft, max_new_tokens=12, do_sample=False)
    assert torch.equal(out, target.generate(ids, max_new_tokens=12, do_sample=False))
    assert all(s.verified == 0 for s in draft.last_telemetry.steps)
