"""A `DSparkConfig` shaped for any transformers decoder-only target.

The draft's layers copy the target's widths (hidden size, heads, head dim, MLP width, RoPE) in the
Qwen3 style (Gemma4 targets should load a released Gemma4 draft instead), read ``num_features`` target
layers spread over the depth like the released drafts (``[1, 9, 17, 25, 33]`` of 36), and share the
target's embedding and LM head (``embeddings_from_target``) unless told otherwise.
"""

from __future__ import annotations

from dspark_hf.models.dspark.configuration_dspark import DSparkConfig


def spread_layer_ids(num_target_layers: int, num_features: int = 5) -> list[int]:
    """``num_features`` layer ids from 1 to ``num_target_layers - 3``, evenly spaced (the released
    Qwen3-4B/8B drafts use [1, 9, 17, 25, 33] of 36 layers)."""
    first, last = 1, max(1, num_target_layers - 3)
    if num_features == 1:
        return [last]
    step = (last - first) / (num_features - 1)
    ids = sorted({round(first + i * step) for i in range(num_features)})
    return ids


def draft_config_for_target(
    target_config,
    *,
    num_hidden_layers: int = 2,
    block_size: int = 7,
    target_layer_ids: list[int] | None = None,
    markov_rank: int = 32,
    markov_head_type: str = "vanilla",
    enable_confidence_head: bool = True,
    mask_token_id: int | None = None,
    embeddings_from_target: bool = True,
) -> DSparkConfig:
    """A draft config for ``target_config`` (a transformers config; its text config is used).

    ``mask_token_id`` defaults to the last id of the vocabulary; pass an id the target never produces
    when its tokenizer has one. ``markov_rank=0`` gives the DFlash variant (no sequential or confidence
    head).
    """
    cfg = target_config.get_text_config()
    heads = cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {"rope_type": "default", "rope_theta": getattr(cfg, "rope_theta", 10000.0)}
    if isinstance(rope, dict) and "rope_theta" not in rope:  # per-layer-type rope (e.g. Gemma): take full attention
        rope = rope.get("full_attention") or next(iter(rope.values()))
    num_layers = cfg.num_hidden_layers
    return DSparkConfig(
        backbone="qwen3",
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=heads,
        num_key_value_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        hidden_act=getattr(cfg, "hidden_act", "silu"),
        rms_norm_eps=getattr(cfg, "rms_norm_eps", 1e-6),
        max_position_embeddings=getattr(cfg, "max_position_embeddings", 4096),
        rope_parameters=dict(rope),
        block_size=block_size,
        mask_token_id=cfg.vocab_size - 1 if mask_token_id is None else mask_token_id,
        target_layer_ids=target_layer_ids or spread_layer_ids(num_layers),
        num_target_layers=num_layers,
        target_hidden_size=cfg.hidden_size,
        markov_rank=markov_rank,
        markov_head_type=markov_head_type,
        enable_confidence_head=enable_confidence_head and markov_rank > 0,
        confidence_head_with_markov=markov_rank > 0,
        target_model_type=cfg.model_type,
        embeddings_from_target=embeddings_from_target,
    )
