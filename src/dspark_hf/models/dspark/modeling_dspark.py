"""`DSparkDraft`: the DSpark draft model (parallel block backbone with context-KV injection).

One forward takes
- ``context_features`` ``[B, n, len(target_layer_ids) * target_hidden]``: the raw target-layer outputs
  of the ``n`` positions committed since the last call, projected by ``fc`` and normed by
  ``hidden_norm`` into context rows;
- the block ``[anchor, MASK x (gamma - 1)]`` (``input_ids`` or ``inputs_embeds``).

In every layer, queries come from the block only; keys and values are the context rows and the block
rows through the same ``k_proj`` / ``v_proj`` (k-norm on both), with RoPE at absolute positions. There
is no causal mask: the block sees all context and itself bidirectionally, unless a training mask is
given. With a cache, only the context rows' keys and values are stored, so the cache never has to be
cut back after a round. Module and parameter names are those of the released checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache

from dspark_hf.checkpoints.fetch import HUB_KEYWORDS, resolve_draft
from dspark_hf.checkpoints.files import CONFIG_NAME, check_local_folder, is_local_path, load_config_json, safetensors_layout
from dspark_hf.checkpoints.formats import DEEPSEEK_V4, EAGLE3, checkpoint_format, describe
from dspark_hf.errors import CheckpointError, CompatibilityError, ConfigValueError, UnsupportedUsageError
from dspark_hf.models.deepseek_v4.checkpoint import load_v4_drafter
from dspark_hf.models.dspark.configuration_dspark import DSparkConfig
from dspark_hf.models.dspark.draft_vocab import spread_to_vocabulary
from dspark_hf.models.dspark.released_format import dspark_config_from_dict
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft
from dspark_hf.models.outputs import DSparkBlockOutput
from dspark_hf.models.rope import RotaryEmbedding as DSparkRotaryEmbedding
from dspark_hf.models.rope import apply_rope as _apply_rope
from dspark_hf.models.rope import inverse_frequencies as _inverse_frequencies
from dspark_hf.models.heads import ConfidenceHead, SequentialHead, build_sequential_head


class DSparkRMSNorm(nn.Module):
    """RMSNorm computed in float32; ``with_scale=False`` is Gemma4's weightless value norm."""

    def __init__(self, dim: int, eps: float, with_scale: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if with_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            h = h * self.weight.float()
        return h.to(x.dtype)


class DSparkMLP(nn.Module):
    def __init__(self, config: DSparkConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))




class DSparkAttention(nn.Module):
    def __init__(self, config: DSparkConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.k_eq_v = config.backbone == "gemma4" and config.attention_k_eq_v
        # Gemma4 folds the 1/sqrt(d) scale into its q/k norms.
        self.scaling = 1.0 if config.backbone == "gemma4" else self.head_dim**-0.5
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = None if self.k_eq_v else nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = DSparkRMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = DSparkRMSNorm(self.head_dim, config.rms_norm_eps)
        self.v_norm = DSparkRMSNorm(self.head_dim, config.rms_norm_eps, with_scale=False) if config.backbone == "gemma4" else None

    def forward(
        self,
        block: torch.Tensor,
        context: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        bsz, q_len, _ = block.shape
        n_ctx = context.shape[1]
        rows = torch.cat([context, block], dim=1)
        q = self.q_norm(self.q_proj(block).view(bsz, q_len, self.num_heads, self.head_dim)).transpose(1, 2)
        k_raw = self.k_proj(rows).view(bsz, n_ctx + q_len, self.num_kv_heads, self.head_dim)
        v_raw = k_raw if self.v_proj is None else self.v_proj(rows).view_as(k_raw)
        k = self.k_norm(k_raw).transpose(1, 2)
        v = (v_raw if self.v_norm is None else self.v_norm(v_raw)).transpose(1, 2)
        q = _apply_rope(q, cos[:, n_ctx:], sin[:, n_ctx:])
        k = _apply_rope(k, cos, sin)
        if cache is not None:
            k_ctx, v_ctx = cache.update(k[:, :, :n_ctx], v[:, :, :n_ctx], self.layer_idx)
            k = torch.cat([k_ctx, k[:, :, n_ctx:]], dim=2)
            v = torch.cat([v_ctx, v[:, :, n_ctx:]], dim=2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, scale=self.scaling, enable_gqa=self.num_kv_heads != self.num_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(bsz, q_len, self.num_heads * self.head_dim))


class DSparkDecoderLayer(nn.Module):
    """Pre-norm decoder layer; Gemma4 adds post-attention / pre- and post-feed-forward norms and a scalar."""

    def __init__(self, config: DSparkConfig, layer_idx: int) -> None:
        super().__init__()
        self.gemma = config.backbone == "gemma4"
        eps = config.rms_norm_eps
        self.self_attn = DSparkAttention(config, layer_idx)
        self.mlp = DSparkMLP(config)
        self.input_layernorm = DSparkRMSNorm(config.hidden_size, eps)
        self.post_attention_layernorm = DSparkRMSNorm(config.hidden_size, eps)
        if self.gemma:
            self.pre_feedforward_layernorm = DSparkRMSNorm(config.hidden_size, eps)
            self.post_feedforward_layernorm = DSparkRMSNorm(config.hidden_size, eps)
            self.register_buffer("layer_scalar", torch.ones(1))

    def forward(self, block, context, cos, sin, attention_mask, cache):
        attn = self.self_attn(self.input_layernorm(block), context, cos, sin, attention_mask, cache)
        if not self.gemma:
            hidden = block + attn
            return hidden + self.mlp(self.post_attention_layernorm(hidden))
        hidden = block + self.post_attention_layernorm(attn)
        hidden = hidden + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(hidden)))
        return hidden * self.layer_scalar


class DSparkPreTrainedModel(PreTrainedModel):
    config_class = DSparkConfig
    config: DSparkConfig
    base_model_prefix = "dspark"
    main_input_name = "input_ids"
    _no_split_modules = ["DSparkDecoderLayer"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, DSparkRMSNorm) and module.weight is not None:
            module.weight.fill_(1.0)
        elif isinstance(module, DSparkDecoderLayer) and module.gemma:
            module.layer_scalar.fill_(1.0)
        elif isinstance(module, DSparkRotaryEmbedding):
            # Non-persistent buffer: transformers materialises it empty when loading, so recompute it.
            module.inv_freq.copy_(_inverse_frequencies(self.config)[0])


class DSparkDraft(DSparkPreTrainedModel):
    """A DSpark draft model. Load released checkpoints with ``DSparkDraft.from_pretrained`` and pass it
    as ``assistant_model`` to a target's ``generate`` after ``import dspark_hf``."""

    def __init__(self, config: DSparkConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_scale = math.sqrt(config.hidden_size) if config.backbone == "gemma4" else 1.0
        self.layers = nn.ModuleList(DSparkDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = DSparkRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = DSparkRotaryEmbedding(config)
        self.fc = nn.Linear(len(config.target_layer_ids) * config.target_hidden_size, config.hidden_size, bias=False)
        self.hidden_norm = DSparkRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.draft_vocab_size or config.vocab_size, bias=False)
        if config.draft_vocab_size:
            # target id of each output logit (FR-Spec / EAGLE-3's d2t, as absolute ids), stored with the weights
            self.register_buffer("draft_vocab_ids", torch.zeros(config.draft_vocab_size, dtype=torch.long))
        else:
            self.draft_vocab_ids = None
        self.markov_head: SequentialHead | None = build_sequential_head(config)
        self.confidence_head: ConfidenceHead | None = None
        if config.enable_confidence_head:
            width = config.hidden_size + (config.markov_rank if config.confidence_head_with_markov else 0)
            self.confidence_head = ConfidenceHead(width)
        if config.embeddings_from_target:
            # Saved without the target's embedding and LM head (bound at first use): not "missing".
            self._keys_to_ignore_on_load_missing = [r"^embed_tokens\.weight$", r"^lm_head\.weight$"]
        self.post_init()
        # Default verification policy for generate() calls that set none (see dspark_hf.verification.policies),
        # and the telemetry of the latest generate() call.
        self.verification_policy = None
        self.last_telemetry = None
        self._bound_target = False

    # -- pieces used by the drafting loop and by training ------------------------------------------

    _TARGET_OWNED = ("embed_tokens.weight", "lm_head.weight")

    def bind_target_embeddings(self, target: nn.Module) -> None:
        """Use the target's input embedding and LM head (frozen) as the draft's own.

        Needed for drafts saved with ``embeddings_from_target``; harmless for others (it replaces their
        copies with the target's tensors, which is what training copied in anyway). The tensors are
        shared when device and dtype agree, else copied.
        """
        for mine, theirs in ((self.embed_tokens, target.get_input_embeddings()), (self.lm_head, target.get_output_embeddings())):
            full_shape = (self.config.vocab_size, mine.weight.shape[1])
            if theirs is None or tuple(theirs.weight.shape) != full_shape:
                shape = None if theirs is None else tuple(theirs.weight.shape)
                raise CompatibilityError(
                    f"Cannot take the target's embeddings: draft expects {full_shape}, target has {shape}."
                )
            weight = theirs.weight
            subset = mine is self.lm_head and self.draft_vocab_ids is not None
            if subset:  # the draft vocabulary's rows: a copy, not shared
                weight = weight.detach()[self.draft_vocab_ids.to(weight.device)]
            if subset or weight.device != mine.weight.device or weight.dtype != mine.weight.dtype:
                weight = nn.Parameter(weight.detach().to(mine.weight.device, mine.weight.dtype), requires_grad=False)
            mine.weight = weight
        self._bound_target = True

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As transformers' ``save_pretrained``; drafts with ``embeddings_from_target`` leave the
        target-owned embedding and LM head out of the weights file."""
        if self.config.embeddings_from_target and kwargs.get("state_dict") is None:
            kwargs["state_dict"] = {k: v for k, v in self.state_dict().items() if k not in self._TARGET_OWNED}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Block input embeddings (Gemma4: scaled by sqrt(hidden), in the weights' dtype)."""
        embeds = self.embed_tokens(input_ids)
        if self.embed_scale != 1.0:
            embeds = embeds * torch.tensor(self.embed_scale, dtype=embeds.dtype)
        return embeds

    def project_context(self, context_features: torch.Tensor) -> torch.Tensor:
        """Concatenated target-layer outputs -> context rows (``hidden_norm(fc(features))``)."""
        return self.hidden_norm(self.fc(context_features.to(self.fc.weight.dtype)))

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(hidden)
        cap = self.config.final_logit_softcapping
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def expand_to_target_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits over the draft vocabulary ``[..., K]`` -> over the target's ``[..., vocab_size]``, ``-inf``
        (probability 0) outside it; the identity for a full-vocabulary draft."""
        if self.draft_vocab_ids is None:
            return logits
        return spread_to_vocabulary(logits, self.draft_vocab_ids, self.config.vocab_size)

    @torch.no_grad()
    def restrict_vocabulary(self, token_ids) -> "DSparkDraft":
        """Keep only the output logits of ``token_ids`` (target ids; e.g. the K most frequent answer
        tokens, :func:`dspark_hf.models.dspark.draft_vocab.top_tokens`): the LM head's and the sequential
        head's rows are sliced, ``config.draft_vocab_size`` and the ``draft_vocab_ids`` buffer are set.
        On an already restricted draft the ids must be a subset of its vocabulary. Returns ``self``."""
        ids = torch.as_tensor(list(token_ids), dtype=torch.long).unique(sorted=True)
        vocab = self.config.vocab_size
        if ids.numel() == 0 or int(ids[0]) < 0 or int(ids[-1]) >= vocab:
            raise ConfigValueError(f"draft vocabulary: token ids must be a non-empty set within [0, {vocab - 1}].")
        current = self.draft_vocab_ids.cpu() if self.draft_vocab_ids is not None else torch.arange(vocab)
        position = torch.full((vocab,), -1, dtype=torch.long)
        position[current] = torch.arange(current.numel())
        rows = position[ids]
        if bool((rows < 0).any()):
            raise ConfigValueError(
                f"draft vocabulary: {int((rows < 0).sum())} of the ids are outside this draft's vocabulary "
                f"of {current.numel()} tokens."
            )

        def sliced(linear: nn.Linear) -> nn.Linear:
            new = nn.Linear(linear.in_features, rows.numel(), bias=linear.bias is not None)
            new = new.to(linear.weight.device, linear.weight.dtype)
            new.weight.copy_(linear.weight[rows.to(linear.weight.device)])
            if linear.bias is not None:
                new.bias.copy_(linear.bias[rows.to(linear.bias.device)])
            new.weight.requires_grad_(linear.weight.requires_grad)
            return new

        self.lm_head = sliced(self.lm_head)
        if self.markov_head is not None:
            self.markov_head.markov_w2 = sliced(self.markov_head.markov_w2)
        device = self.fc.weight.device
        if self.draft_vocab_ids is None:
            del self.draft_vocab_ids
            self.register_buffer("draft_vocab_ids", ids.to(device))
        else:
            self.draft_vocab_ids = ids.to(device)
        self.config.draft_vocab_size = int(ids.numel())
        return self

    def confidence_logits(self, hidden: torch.Tensor, prev_ids: torch.Tensor) -> torch.Tensor | None:
        """Pre-sigmoid confidence per slot from ``[h_k ; W1[prev_k]]``; ``None`` without a confidence head."""
        if self.confidence_head is None:
            return None
        if self.config.confidence_head_with_markov:
            hidden = torch.cat([hidden, self.markov_head.prev_embedding(prev_ids).to(hidden.dtype)], dim=-1)
        return self.confidence_head(hidden)

    def new_cache(self) -> DynamicCache:
        """An empty cache for the context rows' keys and values."""
        return DynamicCache()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        context_features: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        compute_logits: bool = True,
    ) -> DSparkBlockOutput:
        """Run the backbone on a block.

        Args:
            input_ids: ``[B, Q]`` block tokens (anchor then mask tokens); or ``inputs_embeds`` ``[B, Q, H]``.
            context_features: ``[B, n, len(target_layer_ids) * target_hidden]`` for the ``n`` context
                positions not yet in ``past_key_values`` (``n`` may be 0).
            position_ids: ``[B, n + Q]`` absolute positions of the context rows then the block rows.
                Default: the context continues the cache, and the block follows the context.
            attention_mask: optional boolean ``[B, 1, Q, n_cached + n + Q]`` (True = attend), for
                training's packed blocks; ``None`` lets the block see everything.
            past_key_values: cache of earlier context rows; the new context rows are appended to it,
                the block rows never are.
        """
        block = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        bsz, q_len = block.shape[:2]
        if context_features is None:
            context_features = block.new_zeros(bsz, 0, self.fc.in_features)
        context = self.project_context(context_features).to(block.dtype)
        n_ctx = context.shape[1]
        if position_ids is None:
            start = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(start, start + n_ctx + q_len, device=block.device).expand(bsz, -1)
        cos, sin = self.rotary_emb(position_ids, block.dtype)
        hidden = block
        for layer in self.layers:
            hidden = layer(hidden, context, cos, sin, attention_mask, past_key_values)
        hidden = self.norm(hidden)
        return DSparkBlockOutput(last_hidden_state=hidden, logits=self.compute_logits(hidden) if compute_logits else None)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a draft saved by this library or released by DeepSeek (local folder or Hub id).

        Released folders (``architectures: Qwen3DSparkModel / Gemma4DSparkModel``) are recognised from
        their config.json with no extra step. A DeepSeek-V4 repo gives its drafter, a
        :class:`~dspark_hf.models.deepseek_v4.DSparkV4Draft` (only the ``mtp.*`` shards are downloaded
        and read). An EAGLE-3 folder (DeepSpec's ``architectures: Qwen3Eagle3Model``, or one saved by
        :class:`~dspark_hf.models.eagle3.Eagle3Draft`) gives an :class:`~dspark_hf.models.eagle3.Eagle3Draft`.
        A Hub id is fetched through :mod:`dspark_hf.checkpoints.fetch` (the config first,
        then only the weights). Only safetensors weights are read, and they are checked against the
        config before anything is loaded: a missing, unexpected or wrong-shaped tensor, or a truncated
        file, is one :class:`~dspark_hf.errors.CheckpointError` line.
        """
        source = pretrained_model_name_or_path
        hub_kwargs = {k: kwargs.pop(k) for k in HUB_KEYWORDS if k in kwargs}
        subfolder = kwargs.pop("subfolder", "")
        if kwargs.get("use_safetensors") is False:
            raise CheckpointError("dspark_hf loads safetensors only; use_safetensors=False is not supported.")
        kwargs.pop("use_safetensors", None)
        if is_local_path(source):
            folder = Path(source).expanduser() / subfolder
            check_local_folder(folder)
            raw = load_config_json(folder / CONFIG_NAME)
        else:
            if subfolder:
                raise UnsupportedUsageError("subfolder= is not supported for Hub drafts; pass the repo of the draft itself.")
            resolved = resolve_draft(str(source), **hub_kwargs)
            folder, raw = resolved.folder, resolved.config
        kind = checkpoint_format(raw)
        if kind == DEEPSEEK_V4:
            drafter = load_v4_drafter(folder, *model_args, **kwargs)
            drafter.name_or_path = str(source)
            return drafter
        if kind == EAGLE3:
            return Eagle3Draft._from_folder(folder, raw, str(source), *model_args, **kwargs)
        if kind is None:
            raise CheckpointError(f"{source} is not a DSpark draft: its config has {describe(raw)}.")
        config = kwargs.pop("config", None) or dspark_config_from_dict(raw, source=f"{source}/{CONFIG_NAME}")
        check_weights_match_config(cls, config, folder)
        model = super().from_pretrained(folder, *model_args, config=config, use_safetensors=True, **kwargs)
        model.name_or_path = str(source)
        return model


def check_weights_match_config(model_class, config: DSparkConfig, folder: Path) -> None:
    """Raise one :class:`CheckpointError` line unless the safetensors weights in ``folder`` hold exactly
    the tensors a ``model_class(config)`` has, with the same shapes (the target-owned embedding and LM
    head may be absent for ``embeddings_from_target`` drafts). Reads only the files' headers."""
    layout = safetensors_layout(folder)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in model_class(config).state_dict().items()}
    optional = set(DSparkDraft._TARGET_OWNED) if config.embeddings_from_target else set()
    missing = sorted(set(expected) - set(layout) - optional)
    unexpected = sorted(set(layout) - set(expected))
    wrong = sorted(name for name in set(expected) & set(layout) if layout[name][1] != expected[name])

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    if missing:
        raise CheckpointError(f"{folder}: the weights lack {len(missing)} tensors the config needs: {some(missing)}.")
    if unexpected:
        raise CheckpointError(
            f"{folder}: the weights hold {len(unexpected)} tensors this config has no place for: {some(unexpected)} "
            f"(in {layout[unexpected[0]][0]})."
        )
    if wrong:
        name = wrong[0]
        raise CheckpointError(
            f"{folder}: {name} in {layout[name][0]} has shape {layout[name][1]}, but config.json needs "
            f"{expected[name]}" + (f" ({len(wrong) - 1} more tensors differ)." if len(wrong) > 1 else ".")
        )
