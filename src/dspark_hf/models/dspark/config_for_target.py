"""A `DSparkConfig` shaped for any transformers decoder-only target.

The draft's layers copy the target's widths (hidden size, heads, head dim, MLP width, RoPE) in the
Qwen3 style (Gemma4 targets should load a released Gemma4 draft instead), read ``num_features`` target
layers spread over the depth like the released drafts (``[1, 9, 17, 25, 33]`` of 36), and share the
target's embedding and LM head (``embeddings_from_target``) unless told otherwise.
"""

from __future__ import annotations

from dspark_hf.models.dspark.configuration_dspark import DSparkConfig
from dspark_hf.models.target_shape import backbone_shape, spread_layer_ids

__all__ = ["draft_config_for_target", "spread_layer_ids"]


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
    shape = backbone_shape(target_config)
    num_layers = shape["num_target_layers"]
    return DSparkConfig(
        backbone="qwen3",
        **shape,
        num_hidden_layers=num_hidden_layers,
        block_size=block_size,
        mask_token_id=shape["vocab_size"] - 1 if mask_token_id is None else mask_token_id,
        target_layer_ids=target_layer_ids or spread_layer_ids(num_layers),
        target_hidden_size=shape["hidden_size"],
        markov_rank=markov_rank,
        markov_head_type=markov_head_type,
        enable_confidence_head=enable_confidence_head and markov_rank > 0,
        confidence_head_with_markov=markov_rank > 0,
        target_model_type=target_config.get_text_config().model_type,
        embeddings_from_target=embeddings_from_target,
    )
