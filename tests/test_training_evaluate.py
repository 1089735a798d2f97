"""tau measurement: pooled over rounds, and exactly what the telemetry of each generate() call says."""

import json

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from dspark_hf.bundled.target import default_target_dir
from dspark_hf.training.evaluate_acceptance import first_turns, measure_tau
from dspark_hf.training.trainer import TrainConfig, build_draft


def test_measure_tau_pools_emitted_tokens_over_rounds(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(default_target_dir())
    target = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)).eval()
    draft = build_draft(target, TrainConfig(output_dir=str(tmp_path), markov_rank=8, block_size=4, target_layer_ids=[0, 1])).eval()
    data = tmp_path / "bench.jsonl"
    data.write_text("".join(json.dumps({"turns": [t, "second turn"]}) + "\n" for t in ["One?", "Two?", "Three?"]))
    prompts = first_turns(data, 2)
    assert prompts == ["One?", "Two?"]
    result = measure_tau(target, tokenizer, draft, prompts, max_new_tokens=9, progress=False)
    assert result["rounds"] == sum(p["rounds"] for p in result["prompts"]) > 0
    assert result["tau"] == result["emitted"] / result["rounds"]
    assert 1.0 <= result["tau"] <= 5.0
    # every round adds the target's own token; new tokens = prefill token + emitted
    assert all(p["new_tokens"] == 9 for p in result["prompts"])
    assert result["emitted"] == 2 * (9 - 1)
    # the histogram counts every round once, by accepted draft tokens, and agrees with tau and survival
    histogram = result["accepted_histogram"]
    assert len(histogram) == draft.config.block_size + 1 and sum(histogram) == result["rounds"]
    assert sum(k * n for k, n in enumerate(histogram)) + result["rounds"] == result["emitted"]
    survival = result["per_slot_acceptance"]
    assert len(survival) == draft.config.block_size
    assert survival[0] == sum(histogram[1:]) / result["rounds"]  # policy "whole": every round verifies slot 1
