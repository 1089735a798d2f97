"""`Eagle3Config`: the configuration of an EAGLE-3 draft, and its released (DeepSpec) config.json.

DeepSpec releases its EAGLE-3 drafts (``Qwen3Eagle3Model``) with the target's Qwen3 config
(``model_type: qwen3``, ``architectures: ["Qwen3Eagle3Model"]``, ``num_hidden_layers: 1``) plus the keys
``target_layer_ids``, ``num_target_layers``, ``ttt_length``, ``step_loss_decay``,
``draft_num_hidden_layers`` and ``target_model_name_or_path``. :func:`eagle3_config_from_dict` reads that
layout (and this library's own, ``model_type: dspark_eagle3``); :func:`to_released_eagle3_config` writes it.

Rules of the released format, checked on construction (one :class:`~dspark_hf.errors.ConfigValueError`
line naming the key): exactly five ``target_layer_ids``, strictly increasing, within
``[0, num_target_layers - 2]`` (never the target's last layer, whose output is not a feature); one draft
decoder layer; the target's hidden size equals the draft's (``fc`` is ``[H, 5H]``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from dspark_hf.checkpoints.formats import EAGLE3_ARCHITECTURE, EAGLE3_MODEL_TYPE
from dspark_hf.errors import CheckpointError, ConfigValueError
from dspark_hf.json_types import json_kind

NUM_FEATURE_LAYERS = 5  # DeepSpec's EAGLE-3 reads exactly five target layers

_POSITIVE_INTS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "num_target_layers", "ttt_length",
)
# Keys a released config.json must hold (the others have Qwen3 defaults).
_REQUIRED_RELEASED = (
    "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "rms_norm_eps",
    "target_layer_ids", "num_target_layers", "ttt_length",
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_eagle3_values(values: dict[str, Any], source: str = "Eagle3Config") -> None:
    """Raise one :class:`ConfigValueError` line for the first bad EAGLE-3 config value in ``values``."""

    def bad(key: str, allowed: str) -> ConfigValueError:
        return ConfigValueError(f"{key} is {values[key]!r}; it must be {allowed}.", source)

    for key in _POSITIVE_INTS:
        if key in values and not (_is_int(values[key]) and values[key] >= 1):
            raise bad(key, "a whole number >= 1")
    eps = values.get("rms_norm_eps")
    if "rms_norm_eps" in values and not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and math.isfinite(eps) and eps > 0):
        raise bad("rms_norm_eps", "a number > 0")
    if values.get("num_hidden_layers", 1) != 1:
        raise bad("num_hidden_layers", "1 (an EAGLE-3 draft has one decoder layer)")
    decay = values.get("step_loss_decay")
    if "step_loss_decay" in values and not (isinstance(decay, (int, float)) and not isinstance(decay, bool) and math.isfinite(decay) and decay > 0):
        raise bad("step_loss_decay", "a number > 0")
    if "rope_parameters" in values and not isinstance(values["rope_parameters"], dict):
        raise bad("rope_parameters", 'an object such as {"rope_type": "default", "rope_theta": 1000000.0}')
    if "target_layer_ids" in values:
        ids = values["target_layer_ids"]
        if not isinstance(ids, (list, tuple)) or len(ids) != NUM_FEATURE_LAYERS or not all(_is_int(i) for i in ids):
            raise bad("target_layer_ids", f"a list of exactly {NUM_FEATURE_LAYERS} target layer indices")
        if any(b <= a for a, b in zip(ids, ids[1:])) or ids[0] < 0:
            raise bad("target_layer_ids", "strictly increasing layer indices >= 0")
        layers = values.get("num_target_layers")
        if _is_int(layers) and ids[-1] >= layers - 1:
            raise bad("target_layer_ids", f"within [0, {layers - 2}]: never the target's last layer (num_target_layers is {layers})")


class Eagle3Config(PretrainedConfig):
    r"""Configuration of an [`Eagle3Draft`] (DeepSpec's ``Qwen3Eagle3Model``).

    Backbone (Qwen3 shapes, copied from the target): vocab_size, hidden_size, intermediate_size,
    num_attention_heads, num_key_value_heads, head_dim, hidden_act, rms_norm_eps, attention_bias,
    max_position_embeddings, rope_parameters. ``num_hidden_layers`` is always 1.

    EAGLE-3:
        target_layer_ids (`list[int]`): the five target layers whose raw outputs, concatenated in this
            order, are the draft's features (``fc`` maps them from ``5 * hidden_size`` to ``hidden_size``).
        num_target_layers (`int`): decoder layers of the target the draft was trained for.
        ttt_length (`int`): steps of the test-time-training chain, i.e. tokens drafted per round.
        step_loss_decay (`float`): training only: weight decay of later chain steps in the loss.
        target_model_name_or_path (`str`, *optional*): the target it was trained for (informative).
    """

    model_type = EAGLE3_MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 151936,
        hidden_size: int = 4096,
        intermediate_size: int = 12288,
        num_hidden_layers: int = 1,
        num_attention_heads: int = 32,
        num_key_value_heads: int = 8,
        head_dim: int = 128,
        hidden_act: str = "silu",
        rms_norm_eps: float = 1e-6,
        attention_bias: bool = False,
        max_position_embeddings: int = 40960,
        rope_parameters: dict[str, Any] | None = None,
        target_layer_ids: list[int] | None = None,
        num_target_layers: int = 36,
        ttt_length: int = 7,
        step_loss_decay: float = 0.8,
        target_model_name_or_path: str | None = None,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        target_layer_ids = list(target_layer_ids) if isinstance(target_layer_ids, (list, tuple)) else target_layer_ids
        if target_layer_ids is None:
            target_layer_ids = [1, 9, 17, 25, 33]
        rope_parameters = dict(rope_parameters) if isinstance(rope_parameters, dict) else rope_parameters
        if rope_parameters is None:
            rope_parameters = {"rope_type": "default", "rope_theta": 1_000_000.0}
        check_eagle3_values(
            dict(
                vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                num_key_value_heads=num_key_value_heads, head_dim=head_dim, rms_norm_eps=rms_norm_eps,
                max_position_embeddings=max_position_embeddings, rope_parameters=rope_parameters,
                target_layer_ids=target_layer_ids, num_target_layers=num_target_layers, ttt_length=ttt_length,
                step_loss_decay=step_loss_decay,
            )
        )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.hidden_act = hidden_act
        self.rms_norm_eps = rms_norm_eps
        self.attention_bias = attention_bias
        self.max_position_embeddings = max_position_embeddings
        self.rope_parameters = rope_parameters
        self.target_layer_ids = target_layer_ids
        self.num_target_layers = num_target_layers
        self.ttt_length = ttt_length
        self.step_loss_decay = step_loss_decay
        self.target_model_name_or_path = target_model_name_or_path
        self.initializer_range = initializer_range
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def block_size(self) -> int:
        """Tokens drafted per round (``ttt_length``), under the name verification policies read."""
        return self.ttt_length

    @property
    def target_hidden_size(self) -> int:
        """The target's hidden size the features have per layer (the draft's own: ``fc`` is ``[H, 5H]``)."""
        return self.hidden_size

    @property
    def feature_size(self) -> int:
        """Width of the concatenated target features ``fc`` reads (``5 * hidden_size``)."""
        return len(self.target_layer_ids) * self.hidden_size

    @classmethod
    def _dict_from_json_file(cls, json_file):
        config = super()._dict_from_json_file(json_file)
        if not isinstance(config, dict):
            raise CheckpointError(f"{json_file} holds {json_kind(config)}, not an object of config keys.")
        return config


def _rope_parameters(cfg: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("rope_parameters"):
        return dict(cfg["rope_parameters"])
    rope = dict(cfg.get("rope_scaling") or {})  # older configs: rope_theta at the top level
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope["rope_theta"] = cfg.get("rope_theta", 1_000_000.0)
    return rope


def is_released_eagle3_config(cfg: dict[str, Any]) -> bool:
    """True for a config.json in DeepSpec's EAGLE-3 layout (``architectures: Qwen3Eagle3Model``)."""
    architectures = cfg.get("architectures") or []
    return isinstance(architectures, list) and EAGLE3_ARCHITECTURE in architectures


def from_released_eagle3_config(cfg: dict[str, Any], source: str = "config.json") -> Eagle3Config:
    """Translate DeepSpec's EAGLE-3 config.json into an :class:`Eagle3Config`; one line naming
    ``source`` for a missing key or a bad value."""
    missing = [key for key in _REQUIRED_RELEASED if key not in cfg]
    if missing:
        raise CheckpointError(f"{source} is missing required EAGLE-3 config keys: {', '.join(missing)}.")
    layers = cfg.get("draft_num_hidden_layers", cfg.get("num_hidden_layers", 1))
    special = {k: cfg[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id") if cfg.get(k) is not None}
    try:
        return Eagle3Config(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=layers,
            num_attention_heads=cfg["num_attention_heads"],
            num_key_value_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
            hidden_act=cfg.get("hidden_act", "silu"),
            rms_norm_eps=cfg["rms_norm_eps"],
            attention_bias=bool(cfg.get("attention_bias", False)),
            max_position_embeddings=cfg.get("max_position_embeddings", 40960),
            rope_parameters=_rope_parameters(cfg),
            target_layer_ids=cfg["target_layer_ids"],
            num_target_layers=cfg["num_target_layers"],
            ttt_length=cfg["ttt_length"],
            step_loss_decay=cfg.get("step_loss_decay", 0.8),
            target_model_name_or_path=cfg.get("target_model_name_or_path"),
            initializer_range=cfg.get("initializer_range", 0.02),
            **special,
        )
    except ConfigValueError as err:
        raise err.at(source) from None


def to_released_eagle3_config(config: Eagle3Config, dtype: str = "bfloat16") -> dict[str, Any]:
    """DeepSpec's EAGLE-3 config.json for ``config`` (a Qwen3 config plus the EAGLE-3 keys)."""
    return {
        "architectures": [EAGLE3_ARCHITECTURE],
        "model_type": "qwen3",
        "attention_bias": config.attention_bias,
        "attention_dropout": 0.0,
        "bos_token_id": getattr(config, "bos_token_id", None),
        "eos_token_id": getattr(config, "eos_token_id", None),
        "pad_token_id": getattr(config, "pad_token_id", None),
        "draft_num_hidden_layers": config.num_hidden_layers,
        "num_hidden_layers": config.num_hidden_layers,
        "dtype": dtype,
        "head_dim": config.head_dim,
        "hidden_act": config.hidden_act,
        "hidden_size": config.hidden_size,
        "initializer_range": config.initializer_range,
        "intermediate_size": config.intermediate_size,
        "layer_types": ["full_attention"] * config.num_hidden_layers,
        "max_position_embeddings": config.max_position_embeddings,
        "max_window_layers": 28,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "num_target_layers": config.num_target_layers,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": dict(config.rope_parameters),
        "sliding_window": None,
        "step_loss_decay": config.step_loss_decay,
        "target_layer_ids": list(config.target_layer_ids),
        "target_model_name_or_path": config.target_model_name_or_path,
        "tie_word_embeddings": False,
        "ttt_length": config.ttt_length,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": config.vocab_size,
    }


def eagle3_config_from_dict(cfg: dict[str, Any], source: str = "config.json") -> Eagle3Config:
    """The :class:`Eagle3Config` of a config.json object, released (``Qwen3Eagle3Model``) or this
    library's (``model_type: dspark_eagle3``)."""
    if is_released_eagle3_config(cfg):
        return from_released_eagle3_config(cfg, source=source)
    try:
        return Eagle3Config.from_dict({k: v for k, v in cfg.items() if k != "transformers_version"})
    except ConfigValueError as err:
        raise err.at(source) from None


