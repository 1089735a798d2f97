"""Tiny DeepSeek-V4 repos for the V4 drafter tests: a random ``deepseek_v4`` target and a synthesised
checkpoint folder in the released layout (target tensors in two shards, the drafter's ``mtp.*`` tensors
in a third, a ``model.safetensors.index.json`` mapping them)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

VOCAB, HIDDEN, HEAD_DIM, HEADS, Q_LORA, O_GROUPS, O_LORA = 96, 32, 16, 4, 16, 2, 8
EXPERTS, TOP_K, MOE_INTER, HC, TARGET_LAYERS, STAGES, RANK = 4, 2, 16, 4, 4, 3, 8
NOISE_TOKEN = VOCAB - 1

# A V4 config.json in the released style: legacy keys (compress_ratios, num_hash_layers,
# qk_rope_head_dim) and the drafter's dspark_* keys. Window 8 so that prompts overrun it.
RAW_CONFIG = {
    "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "vocab_size": VOCAB,
    "hidden_size": HIDDEN, "moe_intermediate_size": MOE_INTER, "num_hidden_layers": TARGET_LAYERS,
    "num_attention_heads": HEADS, "num_key_value_heads": 1, "head_dim": HEAD_DIM, "q_lora_rank": Q_LORA,
    "qk_rope_head_dim": 8, "o_groups": O_GROUPS, "o_lora_rank": O_LORA, "n_routed_experts": EXPERTS,
    "num_experts_per_tok": TOP_K, "n_shared_experts": 1, "num_hash_layers": 1,
    "compress_ratios": [0] * (TARGET_LAYERS + STAGES), "hc_mult": HC, "sliding_window": 8,
    "index_n_heads": 2, "index_head_dim": 8, "index_topk": 4, "max_position_embeddings": 512,
    "num_nextn_predict_layers": STAGES, "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 1,
    "dspark_block_size": 5, "dspark_noise_token_id": NOISE_TOKEN, "dspark_target_layer_ids": [1, 2, 3],
    "dspark_markov_rank": RANK,
}
TARGET_SHARDS = ("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors")
DRAFTER_SHARD = "model-00003-of-00003.safetensors"


def tiny_v4_target(seed: int = 0, **overrides):
    """A random sliding-window-only ``DeepseekV4ForCausalLM`` shaped by :data:`RAW_CONFIG`; float32.

    Its router biases, attention sinks and mHC parameters are randomised too (transformers
    initialises them to constants), so that no path is trivially symmetric."""
    from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

    raw = {k: v for k, v in RAW_CONFIG.items() if not k.startswith("dspark_") and k not in ("architectures", "model_type")}
    raw["compress_ratios"] = [0] * TARGET_LAYERS
    raw.update(overrides)
    torch.manual_seed(seed)
    model = DeepseekV4ForCausalLM(DeepseekV4Config(**raw)).eval()
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("sinks", ".base", "hc_base")):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
            elif name.endswith(("_proj.weight", "gate.weight", "lm_head.weight", "embed_tokens.weight")) or "experts" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * param.shape[-1] ** -0.5)
        for layer in model.model.layers:
            gate = layer.mlp.gate
            if hasattr(gate, "tid2eid"):
                gate.tid2eid.copy_(torch.stack([torch.randperm(EXPERTS, generator=gen)[:TOP_K] for _ in range(VOCAB)]))
            else:
                gate.e_score_correction_bias.copy_(torch.randn(EXPERTS, generator=gen) * 0.1)
    return model


def drafter_tensors(seed: int = 0, stages: int = STAGES, confidence_bias: bool = False) -> dict[str, torch.Tensor]:
    """Random float32 ``mtp.*`` tensors under the released names (DeepSeek's naming)."""
    gen = torch.Generator().manual_seed(seed)
    t: dict[str, torch.Tensor] = {}

    def lin(name: str, outs: int, ins: int) -> None:
        t[name] = torch.randn(outs, ins, generator=gen) * ins**-0.5

    def vec(name: str, n: int, center: float = 1.0, spread: float = 0.1) -> None:
        t[name] = center + spread * torch.randn(n, generator=gen)

    mix = (2 + HC) * HC
    for s in range(stages):
        p = f"mtp.{s}."
        vec(p + "attn_norm.weight", HIDDEN)
        vec(p + "ffn_norm.weight", HIDDEN)
        for hc in ("hc_attn", "hc_ffn"):
            lin(p + f"{hc}_fn", mix, HC * HIDDEN)
            vec(p + f"{hc}_base", mix, 0.0, 0.5)
            vec(p + f"{hc}_scale", 3, 1.0, 0.2)
        vec(p + "attn.attn_sink", HEADS, 0.0, 0.5)
        lin(p + "attn.wq_a.weight", Q_LORA, HIDDEN)
        vec(p + "attn.q_norm.weight", Q_LORA)
        lin(p + "attn.wq_b.weight", HEADS * HEAD_DIM, Q_LORA)
        lin(p + "attn.wkv.weight", HEAD_DIM, HIDDEN)
        vec(p + "attn.kv_norm.weight", HEAD_DIM)
        lin(p + "attn.wo_a.weight", O_GROUPS * O_LORA, HEADS * HEAD_DIM // O_GROUPS)
        lin(p + "attn.wo_b.weight", HIDDEN, O_GROUPS * O_LORA)
        lin(p + "ffn.gate.weight", EXPERTS, HIDDEN)
        vec(p + "ffn.gate.bias", EXPERTS, 0.0, 0.1)
        for e in range(EXPERTS):
            lin(p + f"ffn.experts.{e}.w1.weight", MOE_INTER, HIDDEN)
            lin(p + f"ffn.experts.{e}.w2.weight", HIDDEN, MOE_INTER)
            lin(p + f"ffn.experts.{e}.w3.weight", MOE_INTER, HIDDEN)
        lin(p + "ffn.shared_experts.w1.weight", MOE_INTER, HIDDEN)
        lin(p + "ffn.shared_experts.w2.weight", HIDDEN, MOE_INTER)
        lin(p + "ffn.shared_experts.w3.weight", MOE_INTER, HIDDEN)
    lin("mtp.0.main_proj.weight", HIDDEN, 3 * HIDDEN)
    vec("mtp.0.main_norm.weight", HIDDEN)
    last = f"mtp.{stages - 1}."
    vec(last + "norm.weight", HIDDEN)
    lin(last + "hc_head_fn", HC, HC * HIDDEN)
    vec(last + "hc_head_base", HC, 0.0, 0.5)
    vec(last + "hc_head_scale", 1, 1.0, 0.2)
    t[last + "markov_head.markov_w1.weight"] = torch.randn(VOCAB, RANK, generator=gen)
    lin(last + "markov_head.markov_w2.weight", VOCAB, RANK)
    lin(last + "confidence_head.proj.weight", 1, HIDDEN + RANK)
    if confidence_bias:
        t[last + "confidence_head.proj.bias"] = torch.randn(1, generator=gen)
    return t


def target_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """A few target tensors under released names (the drafter loader must never read them)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(VOCAB, HIDDEN, generator=gen),
        "head.weight": torch.randn(VOCAB, HIDDEN, generator=gen),
        "layers.0.attn.wq_a.weight": torch.randn(Q_LORA, HIDDEN, generator=gen),
        "layers.1.attn.wq_a.weight": torch.randn(Q_LORA, HIDDEN, generator=gen),
    }


def write_v4_repo(folder: Path, drafter: dict[str, torch.Tensor], raw_config: dict | None = None) -> Path:
    """A V4 repo folder: config.json, two target shards, one drafter shard and the weight index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(raw_config or RAW_CONFIG, indent=1))
    target = target_tensors()
    names = sorted(target)
    weight_map = {}
    for i, shard in enumerate(TARGET_SHARDS):
        part = {n: target[n].contiguous() for n in names[i::2]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        weight_map.update({n: shard for n in part})
    save_file({k: v.contiguous() for k, v in drafter.items()}, str(folder / DRAFTER_SHARD), metadata={"format": "pt"})
    weight_map.update({n: DRAFTER_SHARD for n in drafter})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    return folder
