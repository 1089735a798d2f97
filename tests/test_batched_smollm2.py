"""Batched DSpark on the real SmolLM2-135M-Instruct (float32) with the shipped draft: 4 benchmark
prompts of different lengths together, each request's tokens equal to plain batch-1 greedy
``generate``, for ``whole`` and the hardware-aware policy over the batch (on a
synthetic cost profile, one more verified token costing a tenth of a step, so the schedule does not depend on
this machine's timing), through
``generate_batch`` and through ``generate`` with a left-padded batch. The trained draft is accepted
(both policies) and rejected (``whole``; the scheduler verifies only confident slots) on its own,
no forcing needed.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from batched_support import left_padded, small_cache
from conftest import synthetic_profile
from dspark_hf.verification.policies import HardwareAware
from test_generate_greedy_smollm2 import benchmark_prompts

NEW = 24
PICK = (0, 7, 14, 9)  # mt-bench, gsm8k, humaneval, gsm8k


@pytest.fixture(scope="module")
def smollm2():
    from dspark_hf.bundled.draft import load_default_draft
    from dspark_hf.bundled.target import load_default_target

    target, tokenizer = load_default_target()
    prompts = benchmark_prompts()
    encoded = [
        tokenizer.apply_chat_template([{"role": "user", "content": prompts[i]}], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"][0].tolist()
        for i in PICK
    ]
    eos = target.generation_config.eos_token_id
    plain = [target.generate(torch.tensor([p]), max_new_tokens=NEW, do_sample=False)[0, len(p):].tolist() for p in encoded]
    return target, load_default_draft(), encoded, plain, eos


@pytest.mark.parametrize("policy", ["whole", "hardware"])
def test_generate_batch_equals_batch_one(smollm2, policy):
    from dspark_hf.batching.speculation import kept_recent_blocks

    target, draft, prompts, plain, eos = smollm2
    if policy == "hardware":
        # One more verified token costs a tenth of a step (about what a bf16 verification row costs on the CPUs
        # measured): the policy then verifies often enough for acceptance to show. At 0.35 a step it verified 1-3
        # slots in the whole run, so whether one was accepted was one draw of the draft (the third-round draft:
        # 0 of 1; at 0.1, 29 of 65 accepted, the previous draft 33 of 51).
        policy = HardwareAware(profile=synthetic_profile(draft.config.block_size, per_token=0.1), gate=False)
        # New requests are priced on the draft's recent blocks (kept on the draft): start without them, so that
        # each request drafts its first block and the per-request choice below is made on its own confidences.
        kept_recent_blocks(draft).clear()
    config = GenerationConfig(max_new_tokens=NEW, do_sample=False, eos_token_id=eos, dspark_policy=policy)
    results = target.generate_batch(inputs=prompts, generation_config=config, continuous_batching_config=small_cache(num_blocks=64),
                                    assistant_model=draft)
    assert [r.generated_tokens for r in results.values()] == plain
    rounds = [s for t in draft.last_batch_telemetry.requests.values() for s in t.steps]
    assert sum(s.accepted for s in rounds) > 0
    if policy == "whole":
        assert any(s.accepted < s.verified for s in rounds)
    steps = draft.last_batch_telemetry.steps
    if policy == "whole":
        assert max(s.decoding for s in steps) == len(prompts)
    else:  # per-request drafting: requests verify together, some steps leave a request a plain token
        assert max(s.decoding for s in steps) >= 2 and any(0 < s.drafted_requests < len(prompts) for s in steps)


def test_left_padded_generate_equals_batch_one(smollm2):
    target, draft, prompts, plain, eos = smollm2
    pad = 0
    ids, mask = left_padded(prompts, pad)
    width = ids.shape[1]
    out = target.generate(ids, attention_mask=mask, assistant_model=draft, max_new_tokens=NEW, do_sample=False, pad_token_id=pad)
    for row, expected in zip(out[:, width:].tolist(), plain):
        assert row[: len(expected)] == expected and set(row[len(expected):]) <= {pad}
