"""`DSparkV4Draft`: the DSpark drafter of DeepSeek-V4, built from transformers' ``deepseek_v4`` blocks.

One forward drafts a block of ``gamma`` slots ``[anchor, noise x (gamma - 1)]`` in parallel:

- context features: for each committed position, the outputs of the target layers
  ``target_layer_ids`` averaged over their hyper-connection streams and concatenated
  (``[.., len(ids) * H]``), projected to context rows ``main_norm(main_proj(.))``;
- the block: the target's embedding of the block tokens, expanded to ``hc_mult`` streams, through the
  drafter's DeepSeek-V4 decoder layers (mHC around attention and MoE, unchanged from transformers).
  In each layer's attention the queries come from the block; keys (= values, shared-KV MQA) are the
  last ``sliding_window`` context rows (through that layer's own ``kv_proj`` / ``kv_norm``, no layer
  norm) and the block rows; V4's partial interleaved RoPE at absolute positions; no causal mask (the
  block sees its window of context and itself bidirectionally); per-head attention sinks;
- the head: ``hc_head`` collapses the streams into the *head hidden* (pre-norm), base logits are the
  target's LM head on ``norm(head hidden)``. The sequential (Markov) head and the confidence head
  (over ``[head hidden ; W1[prev]]``) are those of :mod:`dspark_hf.models.heads`.

The drafter has no embedding or LM head of its own: :meth:`bind_target_embeddings` takes the target's.
Only the context rows' keys are cached (:class:`ContextWindowCache`), never the block's.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.deepseek_v4.modeling_deepseek_v4 import (
    DeepseekV4Attention,
    DeepseekV4DecoderLayer,
    DeepseekV4HyperHead,
    DeepseekV4PreTrainedModel,
    DeepseekV4RMSNorm,
    DeepseekV4RotaryEmbedding,
    apply_rotary_pos_emb,
    eager_attention_forward,
)

from dspark_hf.errors import CompatibilityError
from dspark_hf.models.outputs import DSparkBlockOutput
from dspark_hf.models.heads import ConfidenceHead, SequentialHead
from dspark_hf.models.deepseek_v4.configuration import DSparkV4Config


class ContextWindowCache:
    """Per drafter layer, the keys (= values) of the last ``window`` context rows, RoPE applied."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.rows: dict[int, torch.Tensor] = {}
        self.seen = 0  # context positions appended so far (counted on layer 0)

    def update(self, layer_idx: int, new_rows: torch.Tensor) -> torch.Tensor:
        """Append ``new_rows`` ``[B, 1, n, D]``; return the window ``[B, 1, <=window, D]``."""
        rows = new_rows if layer_idx not in self.rows else torch.cat([self.rows[layer_idx], new_rows], dim=2)
        self.rows[layer_idx] = rows[:, :, -self.window :]
        if layer_idx == 0:
            self.seen += new_rows.shape[2]
        return self.rows[layer_idx]

    def get_seq_length(self) -> int:
        return self.seen


def target_feature(layer_output: torch.Tensor) -> torch.Tensor:
    """A V4 target layer's output ``[B, S, hc, H]`` as the drafter's feature: the mean over the streams."""
    return layer_output.mean(dim=-2) if layer_output.dim() == 4 else layer_output


class DSparkV4Attention(DeepseekV4Attention):
    """DeepSeek-V4 sliding-window attention, drafting form: block queries over context-window + block keys.

    Same parameters as :class:`DeepseekV4Attention` (so the same checkpoint tensors); only the forward
    differs: see the module docstring.
    """

    def forward(self, hidden_states, position_embeddings, context, context_position_embeddings, cache=None, **kwargs):
        batch, q_len, _ = hidden_states.shape
        cos, sin = position_embeddings
        ctx_cos, ctx_sin = context_position_embeddings
        q = self.q_b_proj(self.q_a_norm(self.q_a_proj(hidden_states))).view(batch, q_len, -1, self.head_dim).transpose(1, 2)
        q = apply_rotary_pos_emb(self.q_b_norm(q), cos, sin)
        block_kv = apply_rotary_pos_emb(self._keys(hidden_states), cos, sin)
        context_kv = apply_rotary_pos_emb(self._keys(context), ctx_cos, ctx_sin)
        if cache is not None:
            context_kv = cache.update(self.layer_idx, context_kv)
        else:
            context_kv = context_kv[:, :, -self.sliding_window :]
        kv = torch.cat([context_kv, block_kv], dim=2)
        out, _ = eager_attention_forward(self, q, kv, kv, None, scaling=self.scaling)
        # Undo the values' RoPE on the output's rope slice (conjugate rotation at the query position).
        out = apply_rotary_pos_emb(out.transpose(1, 2), cos, -sin).transpose(1, 2)
        grouped = self.o_a_proj(out.reshape(batch, q_len, self.config.o_groups, -1)).flatten(2)
        return self.o_b_proj(grouped), None

    def _keys(self, rows: torch.Tensor) -> torch.Tensor:
        """``kv_norm(kv_proj(rows))`` as ``[B, 1, n, D]`` (one shared key/value head)."""
        return self.kv_norm(self.kv_proj(rows)).unsqueeze(1)


class DSparkV4DecoderLayer(DeepseekV4DecoderLayer):
    """transformers' V4 decoder layer (mHC + attention + MoE) with the drafting attention."""

    def __init__(self, config: DSparkV4Config, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.self_attn = DSparkV4Attention(config, layer_idx)


class DSparkV4PreTrainedModel(DeepseekV4PreTrainedModel):
    """transformers' V4 base class (weight init, fp32-kept modules) with the drafter's config."""

    config_class = DSparkV4Config
    config: DSparkV4Config
    base_model_prefix = "dspark_v4"
    main_input_name = "input_ids"
    _no_split_modules = ["DSparkV4DecoderLayer"]


class DSparkV4Draft(DSparkV4PreTrainedModel):
    """The DeepSeek-V4 DSpark drafter. Load it from a V4 repo with ``DSparkDraft.from_pretrained`` (or
    :func:`dspark_hf.models.deepseek_v4.load_v4_drafter`) and pass it as ``assistant_model`` to the V4 target's
    ``generate`` after ``import dspark_hf``.

    Module names follow transformers' ``deepseek_v4`` (``layers.N.self_attn.q_a_proj``, ...);
    :mod:`dspark_hf.models.deepseek_v4.checkpoint` maps the released ``mtp.N.*`` names onto them.
    """

    def __init__(self, config: DSparkV4Config) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        self.main_proj = nn.Linear(len(config.target_layer_ids) * hidden, hidden, bias=False)
        self.main_norm = DeepseekV4RMSNorm(hidden, eps=config.rms_norm_eps)
        self.layers = nn.ModuleList(DSparkV4DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.hc_head = DeepseekV4HyperHead(config)
        self.norm = DeepseekV4RMSNorm(hidden, eps=config.rms_norm_eps)
        self.rotary_emb = DeepseekV4RotaryEmbedding(config)
        self.markov_head = SequentialHead(config.vocab_size, config.markov_rank, hidden)
        self.confidence_head: ConfidenceHead | None = None
        if config.enable_confidence_head:
            self.confidence_head = ConfidenceHead(hidden + config.markov_rank)
            if not config.confidence_head_bias:
                self.confidence_head.proj.register_parameter("bias", None)
        self.post_init()
        self.verification_policy = None
        self.last_telemetry = None
        self._target_modules: tuple[nn.Module, nn.Module] | None = None  # (embedding, LM head); not registered

    # -- the interface the candidate generator uses ------------------------------------------------

    @property
    def _bound_target(self) -> bool:
        return self._target_modules is not None

    def bind_target_embeddings(self, target: nn.Module) -> None:
        """Use the target's input embedding and LM head (they are not part of the drafter's weights)."""
        embed, head = target.get_input_embeddings(), target.get_output_embeddings()
        hidden, vocab = self.config.hidden_size, self.config.vocab_size
        for module, what in ((embed, "embedding"), (head, "LM head")):
            shape = None if module is None else tuple(module.weight.shape)
            if shape != (vocab, hidden):
                raise CompatibilityError(f"Cannot take the target's {what}: the drafter expects {(vocab, hidden)}, the target has {shape}.")
        self._target_modules = (embed, head)

    target_feature = staticmethod(target_feature)

    def new_cache(self) -> ContextWindowCache:
        """An empty cache for the context rows' keys (the last ``sliding_window`` per layer)."""
        return ContextWindowCache(self.config.sliding_window)

    def confidence_logits(self, hidden: torch.Tensor, prev_ids: torch.Tensor) -> torch.Tensor | None:
        """Pre-sigmoid confidence per slot from ``[head hidden ; W1[prev_k]]``; None without the head."""
        if self.confidence_head is None:
            return None
        features = torch.cat([hidden, self.markov_head.prev_embedding(prev_ids).to(hidden.dtype)], dim=-1)
        return self.confidence_head(features.to(self.confidence_head.proj.weight.dtype))

    def _target(self) -> tuple[nn.Module, nn.Module]:
        if self._target_modules is None:
            raise CompatibilityError("The DeepSeek-V4 drafter has no embedding of its own: call bind_target_embeddings(target) first.")
        return self._target_modules

    def forward(
        self,
        input_ids: torch.LongTensor,
        context_features: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: ContextWindowCache | None = None,
        compute_logits: bool = True,
    ) -> DSparkBlockOutput:
        """Draft one block.

        Args:
            input_ids: ``[B, Q]`` block tokens (anchor then noise tokens).
            context_features: ``[B, n, len(target_layer_ids) * H]`` for the ``n`` context positions not
                yet in ``past_key_values`` (``n`` may be 0).
            position_ids: ``[B, n + Q]`` absolute positions of the new context rows then the block rows;
                default: the context continues the cache and the block follows it.
            past_key_values: a :meth:`new_cache`; the new context rows are appended, block rows never are.

        Returns ``last_hidden_state`` = the pre-norm head hidden ``[B, Q, H]`` (what the confidence head
        reads) and ``logits`` = base logits ``[B, Q, V]`` (before the Markov head).
        """
        embed, head = self._target()
        block = embed(input_ids).to(self.main_proj.weight.dtype)
        bsz, q_len = input_ids.shape
        if context_features is None:
            context_features = block.new_zeros(bsz, 0, self.main_proj.in_features)
        context = self.main_norm(self.main_proj(context_features.to(block.dtype)))
        n_ctx = context.shape[1]
        if position_ids is None:
            start = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(start, start + n_ctx + q_len, device=block.device).expand(bsz, -1)
        cos, sin = self.rotary_emb(block, position_ids=position_ids, layer_type="main")
        hidden = block.unsqueeze(2).expand(-1, -1, self.config.hc_mult, -1).contiguous()
        for layer in self.layers:
            hidden = layer(
                hidden,
                input_ids=input_ids,
                position_embeddings=(cos[:, n_ctx:], sin[:, n_ctx:]),
                context=context,
                context_position_embeddings=(cos[:, :n_ctx], sin[:, :n_ctx]),
                cache=past_key_values,
            )
        head_hidden = self.hc_head(hidden)
        logits = head(self.norm(head_hidden).to(head.weight.dtype)) if compute_logits else None
        return DSparkBlockOutput(last_hidden_state=head_hidden, logits=logits)
