"""Recognise the draft folders DeepSeek released and turn their config into a `DSparkConfig`.

The released drafts (``deepseek-ai/dspark_qwen3_*_block7``, ``dspark_gemma4_12b_block7``, the DFlash
baselines ``dflash_*_block7``) keep the target's text config (``model_type`` ``qwen3`` or
``gemma4_text``, ``architectures`` ``Qwen3DSparkModel`` / ``Gemma4DSparkModel``) plus DSpark keys, and
store weights without a ``model.`` prefix under the same names `DSparkDraft` uses, so only the config
needs translating. :func:`to_released_config` goes the other way, for export.
"""

from __future__ import annotations

from typing import Any

from dspark_hf.models.dspark.configuration_dspark import DSparkConfig, check_config_values, config_source
from dspark_hf.checkpoints.formats import RELEASED, RELEASED_ARCHITECTURES, checkpoint_format
from dspark_hf.errors import CheckpointError


_DSPARK_KEYS = ("block_size", "mask_token_id", "target_layer_ids", "num_target_layers", "markov_rank")
_SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "rms_norm_eps")


def is_released_config(config_dict: dict[str, Any]) -> bool:
    """True for a config.json in the released layout (target text config + DSpark keys)."""
    return checkpoint_format(config_dict) == RELEASED


def _rope_parameters(cfg: dict[str, Any], backbone: str) -> dict[str, Any]:
    rope = cfg.get("rope_parameters")
    if backbone == "gemma4":
        rope = (rope or {}).get("full_attention")
        if not rope:
            raise CheckpointError("Gemma4 draft config lacks rope_parameters['full_attention'].")
        return dict(rope)
    if rope:
        return dict(rope)
    # Older configs: rope_theta (+ rope_scaling) at the top level.
    rope = dict(cfg.get("rope_scaling") or {})
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope["rope_theta"] = cfg.get("rope_theta", 1_000_000.0)
    return rope


def from_released_config(cfg: dict[str, Any], source: str = "config.json") -> DSparkConfig:
    """Translate a released draft config into a :class:`DSparkConfig`; one clear error (naming
    ``source``) per missing key or bad value."""
    backbone = next(RELEASED_ARCHITECTURES[a] for a in cfg["architectures"] if a in RELEASED_ARCHITECTURES)
    gemma = backbone == "gemma4"
    required = _DSPARK_KEYS + _SHAPE_KEYS + (("global_head_dim", "hidden_activation") if gemma else ())
    missing = [key for key in required if key not in cfg]
    rank = cfg.get("markov_rank", 0)
    if isinstance(rank, int) and rank > 0 and "markov_head_type" not in cfg:
        missing.append("markov_head_type")
    if missing:
        raise CheckpointError(f"{source} is missing required DSpark config keys: {', '.join(missing)}.")
    # Types and ranges before any value is used (null keys fall back to defaults below).
    check_config_values(cfg, source, skip_none=True)
    if gemma and (cfg.get("enable_moe_block") or cfg.get("hidden_size_per_layer_input")):
        raise CheckpointError(f"{source}: Gemma4 drafts with MoE blocks or per-layer inputs are not supported.")

    k_eq_v = bool(cfg.get("attention_k_eq_v", False)) if gemma else False
    markov_rank = int(cfg["markov_rank"])
    enable_confidence = bool(cfg.get("enable_confidence_head", False))
    special = {k: cfg[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id") if cfg.get(k) is not None}
    with config_source(source):
        return DSparkConfig(
            backbone=backbone,
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=cfg["num_attention_heads"],
            num_key_value_heads=(
                cfg["num_global_key_value_heads"] if k_eq_v else cfg.get("num_key_value_heads", cfg["num_attention_heads"])
            ),
            head_dim=cfg["global_head_dim"] if gemma else cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
            hidden_act=cfg["hidden_activation"] if gemma else cfg.get("hidden_act", "silu"),
            rms_norm_eps=cfg["rms_norm_eps"],
            attention_bias=bool(cfg.get("attention_bias", False)),
            max_position_embeddings=cfg.get("max_position_embeddings", 40960),
            rope_parameters=_rope_parameters(cfg, backbone),
            attention_k_eq_v=k_eq_v,
            final_logit_softcapping=cfg.get("final_logit_softcapping") if gemma else None,
            block_size=cfg["block_size"],
            mask_token_id=cfg["mask_token_id"],
            target_layer_ids=cfg["target_layer_ids"],
            num_target_layers=cfg["num_target_layers"],
            markov_rank=markov_rank,
            markov_head_type=cfg.get("markov_head_type", "vanilla"),
            enable_confidence_head=enable_confidence,
            confidence_head_with_markov=bool(cfg.get("confidence_head_with_markov", False)) and enable_confidence,
            num_anchors=cfg.get("num_anchors", 512),
            target_model_type=cfg.get("target_model_type", backbone),
            **special,
        )


def to_released_config(config: DSparkConfig) -> dict[str, Any]:
    """The released-layout config.json for ``config`` (Qwen3 style, or Gemma4 text style)."""
    gemma = config.backbone == "gemma4"
    out: dict[str, Any] = {
        "architectures": ["Gemma4DSparkModel" if gemma else "Qwen3DSparkModel"],
        "model_type": "gemma4_text" if gemma else "qwen3",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "rms_norm_eps": config.rms_norm_eps,
        "attention_bias": config.attention_bias,
        "attention_dropout": 0.0,
        "max_position_embeddings": config.max_position_embeddings,
        "layer_types": ["full_attention"] * config.num_hidden_layers,
        "tie_word_embeddings": False,
        "block_size": config.block_size,
        "mask_token_id": config.mask_token_id,
        "target_layer_ids": list(config.target_layer_ids),
        "num_target_layers": config.num_target_layers,
        "num_anchors": config.num_anchors,
        "markov_rank": config.markov_rank,
        "enable_confidence_head": config.enable_confidence_head,
        "dtype": "bfloat16",
    }
    if config.markov_rank > 0:
        out["markov_head_type"] = config.markov_head_type
    if config.enable_confidence_head:
        out["confidence_head_with_markov"] = config.confidence_head_with_markov
    if gemma:
        out.update(
            global_head_dim=config.head_dim,
            head_dim=config.head_dim,
            num_global_key_value_heads=config.num_key_value_heads,
            num_key_value_heads=config.num_key_value_heads,
            attention_k_eq_v=config.attention_k_eq_v,
            hidden_activation=config.hidden_act,
            final_logit_softcapping=config.final_logit_softcapping,
            rope_parameters={"full_attention": dict(config.rope_parameters)},
            enable_moe_block=False,
            hidden_size_per_layer_input=0,
            target_model_type=config.target_model_type or "gemma4",
        )
    else:
        out.update(
            head_dim=config.head_dim,
            num_key_value_heads=config.num_key_value_heads,
            hidden_act=config.hidden_act,
            rope_parameters=dict(config.rope_parameters),
        )
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        out[key] = getattr(config, key, None)
    return out


def dspark_config_from_dict(config: dict[str, Any], source: str = "config.json") -> DSparkConfig:
    """The :class:`DSparkConfig` of a draft's config.json object, in the released layout or this
    library's (``model_type: dspark``)."""
    if is_released_config(config):
        return from_released_config(config, source=source)
    with config_source(source):
        return DSparkConfig.from_dict({k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
