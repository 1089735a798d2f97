"""`DSparkV4Config`: the configuration of a DeepSeek-V4 DSpark drafter.

The V4 drafters ship inside the target repo: its ``config.json`` is the DeepSeek-V4 target's, with the
drafter's keys ``dspark_block_size`` (gamma), ``dspark_noise_token_id`` (the token filling the block's
slots after the anchor), ``dspark_target_layer_ids`` (target layers whose outputs feed the drafter),
``dspark_markov_rank``. The drafter's layers are DeepSeek-V4 decoder layers (mHC, shared-KV MQA with
attention sinks, routed MoE) run on sliding-window attention only, so this config IS a
:class:`~transformers.DeepseekV4Config` whose ``num_hidden_layers`` counts the drafter's layers (all
``sliding_attention`` / ``moe``), plus the drafter's own fields.

The number of drafter layers and the presence of the confidence head (and of its bias) are read from
the checkpoint's ``mtp.*`` tensor names, not from the config (:func:`from_v4_repo_config`).
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import DeepseekV4Config

from dspark_hf.errors import CheckpointError

# Target-only keys of a V4 config.json that do not describe the drafter's layers.
_TARGET_ONLY_KEYS = (
    "architectures", "auto_map", "model_type", "layer_types", "mlp_layer_types", "compress_ratios", "num_hash_layers",
    "quantization_config", "expert_dtype", "transformers_version", "torch_dtype", "dtype", "num_hidden_layers",
    "_name_or_path",
)
_DSPARK_KEYS = {
    "dspark_block_size": "block_size",
    "dspark_noise_token_id": "mask_token_id",
    "dspark_target_layer_ids": "target_layer_ids",
    "dspark_markov_rank": "markov_rank",
}


@strict
class DSparkV4Config(DeepseekV4Config):
    r"""Configuration of a [`DSparkV4Draft`].

    Backbone: every :class:`~transformers.DeepseekV4Config` field, describing the drafter's layers
    (``num_hidden_layers`` drafter layers, all sliding-window attention of ``sliding_window`` and
    top-k routed MoE).

    Drafter:
        block_size (`int`): gamma, drafted tokens per round (slot 0 holds the anchor). Released: 5.
        mask_token_id (`int`): the "noise" token filling slots ``1 .. gamma-1`` of the block input.
        target_layer_ids (`list[int]`): target decoder layers whose outputs (averaged over the
            hyper-connection streams) are concatenated into the context features.
        num_target_layers (`int`): decoder layers of the target.
        markov_rank (`int`): rank ``r`` of the sequential (Markov) head.
        enable_confidence_head (`bool`), confidence_head_bias (`bool`): the confidence head
            ``proj: Linear(hidden + r -> 1)`` over ``[pre-norm head hidden ; W1[prev]]`` and its bias.
        embeddings_from_target (`bool`): always True: the drafter uses the target's embedding and LM head.
    """

    model_type = "dspark_deepseek_v4"

    block_size: int = 5
    mask_token_id: int = 0
    target_layer_ids: list[int] | None = None
    num_target_layers: int = 43
    markov_rank: int = 256
    markov_head_type: str = "vanilla"
    enable_confidence_head: bool = True
    confidence_head_with_markov: bool = True
    confidence_head_bias: bool = False
    embeddings_from_target: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # The drafter's layers are sliding-window attention with routed (not hash) MoE.
        self.layer_types = ["sliding_attention"] * self.num_hidden_layers
        self.mlp_layer_types = ["moe"] * self.num_hidden_layers
        self.target_layer_ids = list(self.target_layer_ids or [])

    @property
    def target_hidden_size(self) -> int:
        """Hidden size of each target feature (the drafter shares the target's hidden size)."""
        return self.hidden_size


def from_v4_repo_config(raw: dict[str, Any], num_draft_layers: int, *, confidence_head: bool,
                        confidence_head_bias: bool, source: str) -> DSparkV4Config:
    """The drafter's config from a V4 repo's ``config.json`` dict and facts read from its weight index.

    Raises :class:`CheckpointError` (one line) when a required ``dspark_*`` key is missing.
    """
    missing = [k for k in ("dspark_block_size", "dspark_noise_token_id", "dspark_target_layer_ids", "dspark_markov_rank")
               if k not in raw]
    if missing:
        raise CheckpointError(f"{source} has no DSpark drafter keys {missing}: it is a DeepSeek-V4 config without a drafter.")
    # Normalise legacy V4 keys (qk_rope_head_dim, compress_rate_*) through transformers' own config.
    target = DeepseekV4Config(**{k: v for k, v in raw.items() if k not in ("architectures", "auto_map", "model_type",
                                                                          "transformers_version", "quantization_config")
                                 and k not in _DSPARK_KEYS})
    fields = {k: v for k, v in target.to_dict().items() if k not in _TARGET_ONLY_KEYS and k in DSparkV4Config.__dataclass_fields__}
    fields.pop("qk_rope_head_dim", None)
    fields.update({mine: raw[theirs] for theirs, mine in _DSPARK_KEYS.items()})
    return DSparkV4Config(
        **fields,
        num_hidden_layers=num_draft_layers,
        num_target_layers=target.num_hidden_layers,
        enable_confidence_head=confidence_head,
        confidence_head_bias=confidence_head_bias,
    )
