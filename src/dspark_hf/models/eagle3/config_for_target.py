"""An `Eagle3Config` shaped for any transformers decoder-only target (DeepSpec's ``build_draft_config``
for its EAGLE-3 trainer, generalised beyond Qwen3 / Gemma4).

The one decoder layer copies the target's widths (hidden size, heads, head dim, MLP width, RoPE) in the
Qwen3 style, ``fc`` reads five target layers (by default spread over the depth like the DSpark drafts:
``[1, 9, 17, 25, 33]`` of 36 layers, ``[1, 8, 14, 20, 27]`` of SmolLM2's 30, so one feature cache serves
both), and the chain drafts ``ttt_length`` tokens. As in DeepSpec, the draft's embedding and LM head are
the target's (copied in, frozen while training: :func:`dspark_hf.training.drafts.build_eagle3_draft`);
unlike DSpark drafts, an EAGLE-3 draft always saves them (the released layout holds them).
"""

from __future__ import annotations

from dspark_hf.models.eagle3.configuration_eagle3 import NUM_FEATURE_LAYERS, Eagle3Config
from dspark_hf.models.target_shape import backbone_shape, spread_layer_ids


def default_layer_ids(num_target_layers: int) -> list[int]:
    """Five layers spread over the depth as for DSpark drafts (:func:`spread_layer_ids`); a target too
    shallow for five distinct ones there gets five spread over ``[0, num_target_layers - 2]``."""
    ids = spread_layer_ids(num_target_layers, NUM_FEATURE_LAYERS)
    usable = num_target_layers - 1
    if len(ids) < NUM_FEATURE_LAYERS and usable >= NUM_FEATURE_LAYERS:
        ids = [round(j * (usable - 1) / (NUM_FEATURE_LAYERS - 1)) for j in range(NUM_FEATURE_LAYERS)]
    return ids


def eagle3_config_for_target(
    target_config,
    *,
    target_layer_ids: list[int] | None = None,
    ttt_length: int = 7,
    step_loss_decay: float = 0.8,
    target_model_name_or_path: str | None = None,
) -> Eagle3Config:
    """An EAGLE-3 draft config for ``target_config`` (a transformers config; its text config is used).

    ``target_layer_ids``: exactly five strictly increasing ids within ``[0, num_layers - 2]`` (default:
    spread over the depth); anything else is one :class:`~dspark_hf.errors.ConfigValueError` line. The
    defaults ``ttt_length=7``, ``step_loss_decay=0.8`` are DeepSpec's released recipe (``eagle3_*_ttt7``).
    """
    shape = backbone_shape(target_config)
    cfg = target_config.get_text_config()
    special = {k: getattr(cfg, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id") if getattr(cfg, k, None) is not None}
    return Eagle3Config(
        **shape,
        num_hidden_layers=1,
        attention_bias=False,
        target_layer_ids=target_layer_ids or default_layer_ids(shape["num_target_layers"]),
        ttt_length=ttt_length,
        step_loss_decay=step_loss_decay,
        target_model_name_or_path=target_model_name_or_path or getattr(target_config, "_name_or_path", None) or None,
        **special,
    )
