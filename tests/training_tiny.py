"""Tiny random targets and data for the training tests (seconds on one CPU thread)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from dspark_hf.training.data import Example


def tiny_target(seed: int = 0, layers: int = 4) -> LlamaForCausalLM:
    """A random Llama of ``layers`` decoder layers (an EAGLE-3 draft reads five of ``[0, layers - 2]``: 6 or more)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, eos_token_id=95, bos_token_id=1, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


# Per method: the TrainConfig fields and the target depth of the tiny runs that the distributed tests
# repeat for each method (an EAGLE-3 draft reads five target layers, hence 6).
TINY_RUNS = {
    "dspark": ({"method": "dspark", "block_size": 4, "markov_rank": 8, "target_layer_ids": [0, 2]}, 4),
    "eagle3": ({"method": "eagle3", "eagle3_positions": "anchors", "ttt_length": 3}, 6),
}


def tiny_run(method: str) -> tuple[dict, LlamaForCausalLM]:
    """The TrainConfig fields of a tiny ``method`` run and a fresh tiny target for it."""
    fields, layers = TINY_RUNS[method]
    return dict(fields), tiny_target(layers=layers)


def tiny_examples(count: int = 12, seed: int = 1) -> list[Example]:
    """Sequences of 18-29 tokens: an 8-token 'prompt' then 'assistant' tokens."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for i in range(count):
        length = 18 + i % 12
        ids = torch.randint(2, 94, (length,), generator=generator).tolist()
        examples.append(Example(ids, [0] * 8 + [1] * (length - 8)))
    return examples


def read_log(out) -> list[dict]:
    """``OUT/train_log.jsonl`` of a run, one dict per logged step (a rerun appends its own steps)."""
    return [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]


def computed(entry: dict) -> dict:
    """What a logged step computed (step, lr, losses, accuracy): the entry without its wall clock."""
    return {k: v for k, v in entry.items() if k != "elapsed_s"}
