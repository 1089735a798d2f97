"""What a new draft copies from its target's config, shared by the DSpark and EAGLE-3 draft configs:
the Qwen3-style backbone widths (hidden size, heads, head dim, MLP width, RoPE) and the target layers
read as features, spread over the depth like the released drafts."""

from __future__ import annotations

from typing import Any


def spread_layer_ids(num_target_layers: int, num_features: int = 5) -> list[int]:
    """``num_features`` layer ids from 1 to ``num_target_layers - 3``, evenly spaced (the released
    Qwen3-4B/8B drafts use [1, 9, 17, 25, 33] of 36 layers)."""
    first, last = 1, max(1, num_target_layers - 3)
    if num_features == 1:
        return [last]
    step = (last - first) / (num_features - 1)
    ids = sorted({round(first + i * step) for i in range(num_features)})
    return ids


def backbone_shape(target_config) -> dict[str, Any]:
    """The draft backbone's shapes for ``target_config`` (a transformers config; its text config is
    used): the keyword arguments DSparkConfig and Eagle3Config share, plus ``num_target_layers``."""
    cfg = target_config.get_text_config()
    heads = cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {"rope_type": "default", "rope_theta": getattr(cfg, "rope_theta", 10000.0)}
    if isinstance(rope, dict) and "rope_theta" not in rope:  # per-layer-type rope (e.g. Gemma): take full attention
        rope = rope.get("full_attention") or next(iter(rope.values()))
    return dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_attention_heads=heads,
        num_key_value_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        hidden_act=getattr(cfg, "hidden_act", "silu"),
        rms_norm_eps=getattr(cfg, "rms_norm_eps", 1e-6),
        max_position_embeddings=getattr(cfg, "max_position_embeddings", 4096),
        rope_parameters=dict(rope),
        num_target_layers=cfg.num_hidden_layers,
    )
