"""Greedy equality on the real SmolLM2-135M-Instruct (float32), 20 benchmark prompts x 64 new tokens.

The draft is randomly initialised and sized for SmolLM2: equality must hold whatever it proposes.
Because a random draft is almost never accepted, the slow run (``pytest -m slow``, about 6 minutes
more here) also runs every prompt with the draft pushed
towards the target's own greedy continuation except at scheduled slots (see
``test_generate_greedy_tiny.force_towards``), so that partial acceptance, the target's cache crop and
the draft's context cache are all exercised on the real model.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GenerationConfig

from conftest import EVAL_DATASETS_DIR
from dspark_hf import DSparkDraft
from dspark_hf.models.dspark.config_for_target import draft_config_for_target
from test_generate_greedy_tiny import force_towards

NEW_TOKENS = 64
PROMPTS_PER_SET = {"mt-bench": 7, "gsm8k": 7, "humaneval": 6}


def benchmark_prompts() -> list[str]:
    prompts = []
    for name, count in PROMPTS_PER_SET.items():
        with open(EVAL_DATASETS_DIR / f"{name}.jsonl") as f:
            prompts += [json.loads(line)["turns"][0] for line, _ in zip(f, range(count))]
    return prompts


def random_smollm2_draft(target) -> DSparkDraft:
    torch.manual_seed(0)
    return DSparkDraft(draft_config_for_target(target.config, num_hidden_layers=1, markov_rank=16)).eval()


@pytest.fixture(scope="module")
def smollm2():
    from dspark_hf.bundled.target import load_default_target

    target, tokenizer = load_default_target()
    encoded = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        for p in benchmark_prompts()
    ]
    plain = [target.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, attention_mask=torch.ones_like(ids)) for ids in encoded]
    return target, encoded, plain


def test_prompt_set(smollm2):
    _, encoded, plain = smollm2
    assert len(encoded) == 20
    # At least 64 new tokens on most prompts (a prompt may legitimately end early with EOS).
    assert sum(p.shape[1] - e.shape[1] == NEW_TOKENS for e, p in zip(encoded, plain)) >= 15


@pytest.mark.parametrize("policy", ["whole", "threshold:0.5"])
@pytest.mark.parametrize(
    "oracle", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["random-draft", "oracle-draft"]
)
def test_greedy_equality_on_smollm2(smollm2, policy, oracle):
    target, encoded, plain = smollm2
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, dspark_policy=policy)
    accepted = 0
    for ids, expected in zip(encoded, plain):
        draft = random_smollm2_draft(target)
        if oracle:
            force_towards(draft, expected[0])
        out = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=torch.ones_like(ids))
        assert torch.equal(out, expected), f"speculative output differs from plain generate on prompt of length {ids.shape[1]}"
        accepted += sum(s.accepted for s in draft.last_telemetry.steps)
    if oracle and policy == "whole":
        assert accepted > 20 * NEW_TOKENS / 4, f"only {accepted} draft tokens accepted"
