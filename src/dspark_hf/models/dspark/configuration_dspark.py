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

from typing import Any

from transformers import PretrainedConfig

BACKBONES = ("qwen3", "gemma4")
MARKOV_HEAD_TYPES = ("vanilla", "gated", "rnn")


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
        **kwargs: Any,
    ) -> None:
        if backbone not in BACKBONES:
            raise ValueError(f"DSparkConfig.backbone must be one of {BACKBONES}, got {backbone!r}.")
        if markov_rank > 0 and markov_head_type not in MARKOV_HEAD_TYPES:
            raise ValueError(
                f"DSparkConfig.markov_head_type must be one of {MARKOV_HEAD_TYPES}, got {markov_head_type!r}."
            )
        if enable_confidence_head and confidence_head_with_markov and markov_rank == 0:
            raise ValueError("confidence_head_with_markov needs a sequential head (markov_rank > 0).")
        target_layer_ids = list(target_layer_ids if target_layer_ids is not None else [1, 9, 17, 25, 33])
        if not target_layer_ids or any(b <= a for a, b in zip(target_layer_ids, target_layer_ids[1:])):
            raise ValueError(f"target_layer_ids must be non-empty and strictly increasing, got {target_layer_ids}.")
        if target_layer_ids[0] < -1 or target_layer_ids[-1] >= num_target_layers:
            raise ValueError(
                f"target_layer_ids {target_layer_ids} must lie in [-1, {num_target_layers - 1}] "
                f"for a target with num_target_layers={num_target_layers}."
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
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
