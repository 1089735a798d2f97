"""`DSparkConfig`: the configuration of a DSpark draft model.

A DSpark draft is a small stack of decoder layers in the style of its target's family (``backbone``:
``"qwen3"`` for Qwen3/Llama-like targets, ``"gemma4"`` for Gemma4) that reads the raw outputs of a few
target layers (``target_layer_ids``) and drafts ``block_size`` tokens in one parallel forward pass,
followed by a cheap sequential (Markov) head that corrects the block left to right and an optional
confidence head that predicts, per slot, the probability that the slot survives verification.

The released DeepSeek checkpoints keep their target's config (``model_type`` ``qwen3`` /
``gemma4_text``) plus extra keys; :mod:`dspark_hf.models.dspark.released_format` converts those to this class.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from dspark_hf.errors import CheckpointError, ConfigValueError
from dspark_hf.json_types import json_kind

BACKBONES = ("qwen3", "gemma4")
MARKOV_HEAD_TYPES = ("vanilla", "gated", "rnn")

# Whole numbers >= 1 (the released layout's Gemma4 names included).
_POSITIVE_INTS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "block_size", "num_target_layers",
    "num_anchors", "target_hidden_size", "global_head_dim", "num_global_key_value_heads",
)
_FLAGS = ("attention_bias", "attention_k_eq_v", "enable_confidence_head", "confidence_head_with_markov", "embeddings_from_target")
_STRINGS = ("hidden_act", "hidden_activation", "target_model_type")
# Keys that may be null: they have a fallback (target_hidden_size = hidden_size, no soft-capping, ...).
_NULLABLE = ("target_hidden_size", "final_logit_softcapping", "target_model_type", "rope_parameters", "draft_vocab_size") + _FLAGS


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any) -> str:
    """``repr`` of a value, with its type when that is the problem (``'7' (a str)``)."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if value is None or isinstance(value, (bool, int, float, list, tuple)):
        return text
    return f"{text} (a {type(value).__name__})"


def check_config_values(values: Mapping[str, Any], source: str = "DSparkConfig", skip_none: bool = False) -> None:
    """Raise one :class:`~dspark_hf.errors.ConfigValueError` line (key, value, what is allowed) for the
    first bad DSpark config value in ``values``; keys ``values`` lacks are not checked, nor (with
    ``skip_none``) keys set to null. Cross-key rules (``mask_token_id < vocab_size``,
    ``target_layer_ids`` within ``num_target_layers``) use the other key when it is valid."""

    def bad(key: str, allowed: str) -> ConfigValueError:
        return ConfigValueError(f"{key} is {_shown(values[key])}; it must be {allowed}.", source)

    def given(key: str) -> bool:
        if key not in values:
            return False
        return not (values[key] is None and (skip_none or key in _NULLABLE))

    if given("backbone") and values["backbone"] not in BACKBONES:
        raise bad("backbone", "one of " + ", ".join(map(repr, BACKBONES)))
    for key in _POSITIVE_INTS:
        if given(key) and not (_is_int(values[key]) and values[key] >= 1):
            raise bad(key, "a whole number >= 1")
    for key in _FLAGS:
        if given(key) and not isinstance(values[key], bool):
            raise bad(key, "true or false")
    for key in _STRINGS:
        if given(key) and not isinstance(values[key], str):
            raise bad(key, "a string")
    if given("rms_norm_eps") and not (_is_number(values["rms_norm_eps"]) and values["rms_norm_eps"] > 0):
        raise bad("rms_norm_eps", "a number > 0")
    if given("initializer_range") and not (_is_number(values["initializer_range"]) and values["initializer_range"] >= 0):
        raise bad("initializer_range", "a number >= 0")
    if given("final_logit_softcapping") and not (_is_number(values["final_logit_softcapping"]) and values["final_logit_softcapping"] > 0):
        raise bad("final_logit_softcapping", "a number > 0, or null for none")
    if given("rope_parameters") and not isinstance(values["rope_parameters"], Mapping):
        raise bad("rope_parameters", 'an object such as {"rope_type": "default", "rope_theta": 1000000.0}')
    vocab = values.get("vocab_size")
    if given("mask_token_id"):
        mask = values["mask_token_id"]
        if _is_int(vocab):
            if not (_is_int(mask) and 0 <= mask < vocab):
                raise bad("mask_token_id", f"a whole number in [0, {vocab - 1}] (vocab_size is {vocab})")
        elif not (_is_int(mask) and mask >= 0):
            raise bad("mask_token_id", "a whole number >= 0")
    if given("draft_vocab_size"):
        size = values["draft_vocab_size"]
        limit = f" and at most vocab_size ({vocab})" if _is_int(vocab) else ""
        if not (_is_int(size) and size >= 1 and (not _is_int(vocab) or size <= vocab)):
            raise bad("draft_vocab_size", f"a whole number >= 1{limit}, or null for the full vocabulary")
    rank = values.get("markov_rank")
    if given("markov_rank") and not (_is_int(rank) and rank >= 0):
        raise bad("markov_rank", "a whole number >= 0 (0: no sequential head)")
    if _is_int(rank) and rank > 0 and given("markov_head_type") and values["markov_head_type"] not in MARKOV_HEAD_TYPES:
        raise bad("markov_head_type", "one of " + ", ".join(map(repr, MARKOV_HEAD_TYPES)))
    if given("target_layer_ids"):
        ids = values["target_layer_ids"]
        if not isinstance(ids, (list, tuple)) or not all(_is_int(i) for i in ids):
            raise bad("target_layer_ids", "a list of whole numbers (target layer indices, -1 = embeddings)")
        if not ids or any(b <= a for a, b in zip(ids, ids[1:])):
            raise bad("target_layer_ids", "a non-empty, strictly increasing list of layer indices")
        layers = values.get("num_target_layers")
        if _is_int(layers) and layers >= 1 and (ids[0] < -1 or ids[-1] >= layers):
            raise bad("target_layer_ids", f"within [-1, {layers - 1}] (num_target_layers is {layers})")
        if ids[0] < -1:
            raise bad("target_layer_ids", "layer indices >= -1 (-1 = embeddings)")
    if values.get("enable_confidence_head") and values.get("confidence_head_with_markov") and rank == 0:
        raise ConfigValueError(
            "confidence_head_with_markov is true but markov_rank is 0; the confidence head can read the "
            "sequential head only when markov_rank > 0 (set confidence_head_with_markov to false).",
            source,
        )


@contextmanager
def config_source(source: str) -> Iterator[None]:
    """Report the :class:`~dspark_hf.errors.ConfigValueError` of a config built inside against ``source``."""
    try:
        yield
    except ConfigValueError as err:
        raise err.at(source) from None


class DSparkConfig(PretrainedConfig):
    r"""Configuration of a [`DSparkDraft`].

    Backbone (the target family's layer shapes; the released drafts copy them from the target):
        backbone (`str`): ``"qwen3"`` (RMSNorm, q/k-norm attention, SwiGLU) or ``"gemma4"`` (values
            equal keys when ``attention_k_eq_v``, four norms per layer, a layer scalar, scaled
            embeddings, final-logit soft-capping).
        vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, head_dim, hidden_act, rms_norm_eps, attention_bias, max_position_embeddings:
            as in the target family's config. For ``gemma4`` these are the *global* (full-attention)
            head dim and key/value head count.
        rope_parameters (`dict`): ``{"rope_type": ..., "rope_theta": ..., ...}`` of the draft's
            attention (for Gemma4, the target's full-attention entry, e.g. ``proportional``).
        attention_k_eq_v (`bool`): Gemma4 only: no ``v_proj``, values are the (unscaled-normed) keys.
        final_logit_softcapping (`float`, *optional*): Gemma4 only: ``tanh(x / c) * c`` on base logits.

    DSpark:
        block_size (`int`): drafted tokens per round (``gamma``); slot 0 holds the anchor.
        mask_token_id (`int`): the unused token id filling slots ``1 .. gamma-1`` of the block input.
        target_layer_ids (`list[int]`): target decoder layers whose raw outputs are the context
            features, strictly increasing; ``-1`` is the embedding output.
        num_target_layers (`int`): decoder layers of the target the draft was trained for.
        target_hidden_size (`int`, *optional*): hidden size of that target (defaults to ``hidden_size``).
        markov_rank (`int`): rank of the sequential head; ``0`` is the DFlash variant (no sequential
            head, no confidence head).
        markov_head_type (`str`): ``"vanilla"``, ``"gated"`` or ``"rnn"``.
        enable_confidence_head (`bool`), confidence_head_with_markov (`bool`): the confidence head
            and whether it also reads the sequential head's embedding of the previous token.
        num_anchors (`int`): training only: random anchors sampled per sequence.
        target_model_type (`str`, *optional*): the target's ``model_type``, for messages and export.
        embeddings_from_target (`bool`): the draft's (frozen) input embedding and LM head are the
            target's own: they are not saved with the draft and are bound to the target's tensors on
            first use (:meth:`DSparkDraft.bind_target_embeddings`). The released drafts store copies.
        draft_vocab_size (`int`, *optional*): a reduced output vocabulary of this many target tokens
            (their ids are the model's ``draft_vocab_ids`` buffer, stored with the weights): the LM head
            and the sequential head compute only these logits, and every other token has probability 0
            in the draft's distribution. ``None`` (default): the whole ``vocab_size``.

    Every value is checked on construction (:func:`check_config_values`): a wrong type or range is one
    :class:`~dspark_hf.errors.ConfigValueError` (a ``CheckpointError``) line naming the key, the value
    and what is allowed; loaded from a folder, the line names its config.json.
    """

    model_type = "dspark"

    def __init__(
        self,
        backbone: str = "qwen3",
        vocab_size: int = 151936,
        hidden_size: int = 2560,
        intermediate_size: int = 9728,
        num_hidden_layers: int = 5,
        num_attention_heads: int = 32,
        num_key_value_heads: int = 8,
        head_dim: int = 128,
        hidden_act: str = "silu",
        rms_norm_eps: float = 1e-6,
        attention_bias: bool = False,
        max_position_embeddings: int = 40960,
        rope_parameters: dict[str, Any] | None = None,
        attention_k_eq_v: bool = False,
        final_logit_softcapping: float | None = None,
        block_size: int = 7,
        mask_token_id: int = 151669,
        target_layer_ids: list[int] | None = None,
        num_target_layers: int = 36,
        target_hidden_size: int | None = None,
        markov_rank: int = 256,
        markov_head_type: str = "vanilla",
        enable_confidence_head: bool = True,
        confidence_head_with_markov: bool = True,
        num_anchors: int = 512,
        target_model_type: str | None = None,
        embeddings_from_target: bool = False,
        initializer_range: float = 0.02,
        draft_vocab_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        target_layer_ids = list(target_layer_ids) if isinstance(target_layer_ids, (list, tuple)) else target_layer_ids
        if target_layer_ids is None:
            target_layer_ids = [1, 9, 17, 25, 33]
        check_config_values(
            dict(
                backbone=backbone, vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                num_key_value_heads=num_key_value_heads, head_dim=head_dim, hidden_act=hidden_act,
                rms_norm_eps=rms_norm_eps, attention_bias=attention_bias, max_position_embeddings=max_position_embeddings,
                rope_parameters=rope_parameters, attention_k_eq_v=attention_k_eq_v,
                final_logit_softcapping=final_logit_softcapping, block_size=block_size, mask_token_id=mask_token_id,
                target_layer_ids=target_layer_ids, num_target_layers=num_target_layers,
                target_hidden_size=target_hidden_size, markov_rank=markov_rank, markov_head_type=markov_head_type,
                enable_confidence_head=enable_confidence_head, confidence_head_with_markov=confidence_head_with_markov,
                num_anchors=num_anchors, target_model_type=target_model_type,
                embeddings_from_target=embeddings_from_target, initializer_range=initializer_range,
                draft_vocab_size=draft_vocab_size,
            )
        )
        self.backbone = backbone
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
        self.rope_parameters = dict(rope_parameters or {"rope_type": "default", "rope_theta": 1_000_000.0})
        self.attention_k_eq_v = attention_k_eq_v
        self.final_logit_softcapping = final_logit_softcapping
        self.block_size = block_size
        self.mask_token_id = mask_token_id
        self.target_layer_ids = target_layer_ids
        self.num_target_layers = num_target_layers
        self.target_hidden_size = target_hidden_size or hidden_size
        self.markov_rank = markov_rank
        self.markov_head_type = markov_head_type
        self.enable_confidence_head = enable_confidence_head
        self.confidence_head_with_markov = confidence_head_with_markov
        self.num_anchors = num_anchors
        self.target_model_type = target_model_type
        self.embeddings_from_target = embeddings_from_target
        self.initializer_range = initializer_range
        # A reduced output vocabulary (FR-Spec / EAGLE-3's d2t): the LM head and the sequential head compute
        # draft_vocab_size logits for the target ids in the `draft_vocab_ids` buffer; None = all vocab_size.
        self.draft_vocab_size = draft_vocab_size
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' ``from_pretrained``, with a bad value reported against the config.json it came from."""
        source = f"{Path(str(pretrained_model_name_or_path)) / kwargs.get('subfolder', '') / 'config.json'}"
        with config_source(source):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def _dict_from_json_file(cls, json_file):
        config = super()._dict_from_json_file(json_file)
        if not isinstance(config, dict):
            raise CheckpointError(f"{json_file} holds {json_kind(config)}, not an object of config keys.")
        return config
