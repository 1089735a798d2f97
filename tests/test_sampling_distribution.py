"""Speculative sampling with a DSpark draft draws from the target's own distribution.

A tiny target with a 6-token vocabulary, sampled at temperature 0.9 with top-k 4 (so the draft must
report its *processed*, sequentially corrected distribution). The exact joint distribution of the
first three generated tokens is computed by enumerating the target's 1 + 6 + 36 prefixes with the same
logits processors; ``SAMPLES`` speculative generations are compared with it by Pearson's chi-square
(cells with expected count < 5 pooled). The test passes while the statistic stays below the chi-square
quantile at 1 - 1e-4 (a correct implementation fails one run in 10,000). The draft is deliberately
peaky and unlike the target, so acceptances, rejections with residual draws, and bonus tokens all occur.

Negative control: the same test with a draft that draws from its true distribution but reports a
different one (uniform) must exceed the bound.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessorList, Qwen3Config, Qwen3ForCausalLM
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper

import dspark_hf.integration.candidate_generator as candidate_generator
from dspark_hf import DSparkConfig, DSparkDraft
from dspark_hf.drafting.block import DraftBlock

VOCAB, NEW_TOKENS, SAMPLES = 6, 3, 1500
TEMPERATURE, TOP_K = 0.9, 4
PROMPT = torch.tensor([[1, 3, 2, 4]])


def build_pair():
    torch.manual_seed(1234)
    target = Qwen3ForCausalLM(
        Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=16, max_position_embeddings=64, tie_word_embeddings=False)
    ).eval()
    with torch.no_grad():
        target.lm_head.weight.mul_(6.0)  # distinct, not-too-flat target distributions
    draft = DSparkDraft(
        DSparkConfig(backbone="qwen3", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_target_layers=4,
                     target_layer_ids=[0, 2], mask_token_id=5, block_size=3, markov_rank=4, max_position_embeddings=64)
    ).eval()
    with torch.no_grad():
        draft.lm_head.weight.normal_(0, 1.5)  # peaky draft, unlike the target
    return target, draft


def exact_joint(target) -> dict[tuple[int, ...], float]:
    processors = LogitsProcessorList([TemperatureLogitsWarper(TEMPERATURE), TopKLogitsWarper(TOP_K)])
    joint = {}
    with torch.no_grad():
        for seq in itertools.product(range(VOCAB), repeat=NEW_TOKENS):
            prob, ids = 1.0, PROMPT
            for token in seq:
                logits = processors(ids, target(ids).logits[:, -1].float())
                prob *= torch.softmax(logits, -1)[0, token].item()
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
                if prob == 0.0:
                    break
            joint[seq] = prob
    return joint


def chi_square_quantile(df: int, z: float = 3.719) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile; z = 3.719 is the normal 1 - 1e-4 quantile."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(counts: dict, joint: dict, n: int) -> tuple[float, int]:
    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for seq, p in joint.items():
        if n * p >= 5:
            cells.append((counts.get(seq, 0), n * p))
        else:
            pooled_obs += counts.get(seq, 0)
            pooled_exp += n * p
    if pooled_exp > 0:
        cells.append((pooled_obs, pooled_exp))
    return sum((o - e) ** 2 / e for o, e in cells), len(cells) - 1


def sample_counts(target, draft, policy: str) -> dict:
    config = GenerationConfig(
        do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, top_p=1.0, max_new_tokens=NEW_TOKENS,
        dspark_policy=policy, pad_token_id=0, eos_token_id=None,
    )
    counts: dict[tuple[int, ...], int] = {}
    accepted = rejected = 0
    for _ in range(SAMPLES):
        out = target.generate(PROMPT, assistant_model=draft, generation_config=config)
        seq = tuple(out[0, PROMPT.shape[1]:].tolist())
        counts[seq] = counts.get(seq, 0) + 1
        for step in draft.last_telemetry.steps:
            accepted += step.accepted
            rejected += step.verified > step.accepted
    assert accepted > SAMPLES / 20 and rejected > SAMPLES / 20, "acceptance and rejection paths both exercised"
    return counts


@pytest.fixture(scope="module")
def pair_and_joint():
    target, draft = build_pair()
    joint = exact_joint(target)
    assert abs(sum(joint.values()) - 1.0) < 1e-4
    return target, draft, joint


@pytest.mark.parametrize("policy", ["whole", "threshold:0.5"])
def test_speculative_sampling_matches_target_distribution(pair_and_joint, policy):
    target, draft, joint = pair_and_joint
    torch.manual_seed(7)
    stat, df = chi_square(sample_counts(target, draft, policy), joint, SAMPLES)
    assert stat < chi_square_quantile(df), f"chi2={stat:.1f} with df={df} exceeds the 1e-4 bound"


def test_negative_control_misreported_distribution_fails(pair_and_joint, monkeypatch):
    target, draft, joint = pair_and_joint
    original = candidate_generator.draw_block

    def misreporting_draw_block(*args, **kwargs):
        block = original(*args, **kwargs)
        return DraftBlock(tokens=block.tokens, logits=torch.zeros_like(block.logits), confidences=block.confidences)

    monkeypatch.setattr(candidate_generator, "draw_block", misreporting_draw_block)
    torch.manual_seed(7)
    stat, df = chi_square(sample_counts(target, draft, "whole"), joint, SAMPLES)
    assert stat > chi_square_quantile(df), f"misreporting went undetected: chi2={stat:.1f}, df={df}"
