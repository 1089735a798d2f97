"""`Eagle3Draft`: an EAGLE-3 draft model, loading DeepSpec's released ``Qwen3Eagle3Model`` checkpoints.

Architecture (one Qwen3-style decoder layer). A forward takes ``input_ids`` ``[B, n]`` and
``hidden_states`` ``[B, n, W]``, where ``W`` is either ``5 * H`` (the concatenated raw outputs of the
five target layers, projected by ``fc`` to ``H``) or ``H`` (the draft's own fed-back hidden state, used
as is). With ``h`` that H-wide state and ``e = embed_tokens(input_ids)``::

    x   = h + o_proj(attention([input_layernorm(e) ; hidden_norm(h)]))   # q/k/v read 2H columns
    out = x + mlp(post_attention_layernorm(x))                           # SwiGLU

Attention is Qwen3's (q_norm / k_norm per head, then RoPE at absolute positions, grouped KV heads,
scale ``head_dim ** -0.5``). ``out`` is the *pre-norm* hidden state: it is what the test-time-training
chain feeds back, and logits are ``lm_head(norm(out))``.

Masking reproduces DeepSpec's sdpa call exactly: a multi-row forward on an empty cache is causal; any
forward on a non-empty cache has **no** mask (a multi-row extend after verification lets every new row
see every other new row; only its last row is used for drafting).

Drafting helpers, one job each: :meth:`Eagle3Draft.extend_context` (the prefill and the after-
verification extend of the draft cache), :meth:`Eagle3Draft.crop_cache` (drop rejected steps) and
:meth:`Eagle3Draft.propose` (the TTT chain of ``ttt_length`` steps, greedy unless given a ``draw``); they run without
gradients (training calls :meth:`Eagle3Draft.forward`). Module and parameter names
are those of the released checkpoints (no ``model.`` prefix, no rotary buffer saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.utils import ModelOutput

from dspark_hf.models.rope import RotaryEmbedding as Eagle3RotaryEmbedding
from dspark_hf.models.rope import apply_rope as _apply_rope
from dspark_hf.models.rope import inverse_frequencies as _inverse_frequencies
from dspark_hf.checkpoints.fetch import HUB_KEYWORDS, resolve_draft
from dspark_hf.checkpoints.files import CONFIG_NAME, check_local_folder, is_local_path, load_config_json, safetensors_layout
from dspark_hf.checkpoints.formats import EAGLE3, checkpoint_format, describe
from dspark_hf.errors import CheckpointError, UnsupportedUsageError
from dspark_hf.models.eagle3.configuration_eagle3 import Eagle3Config, eagle3_config_from_dict


class Eagle3RMSNorm(nn.Module):
    """Qwen3's RMSNorm: normalised in float32, scaled by ``weight`` in the input dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)




class Eagle3Attention(nn.Module):
    """Qwen3 attention whose q/k/v projections read the ``2H``-wide ``[embedding ; hidden]`` rows."""

    def __init__(self, config: Eagle3Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        width, bias = 2 * config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(width, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(width, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(width, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = Eagle3RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = Eagle3RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: Cache | None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        bsz, q_len, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(bsz, q_len, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(bsz, q_len, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(bsz, q_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.get_seq_length(self.layer_idx)
            k, v = cache.update(k, v, self.layer_idx)
        # DeepSpec's rule: causal only for several rows on an empty cache; no mask otherwise. A given
        # boolean mask (True: attend) replaces the rule (a padded batch of ragged caches hides its padding).
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, is_causal=attention_mask is None and q_len > 1 and past == 0,
            scale=self.scaling, enable_gqa=self.num_kv_heads != self.num_heads,
        )
        return self.o_proj(out.transpose(1, 2).reshape(bsz, q_len, self.num_heads * self.head_dim))


class Eagle3MLP(nn.Module):
    def __init__(self, config: Eagle3Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class Eagle3DecoderLayer(nn.Module):
    """The draft's one layer: attention over ``[input_layernorm(embeds) ; hidden_norm(hidden)]``, with
    ``hidden`` (un-normed) as the residual, then Qwen3's MLP block."""

    def __init__(self, config: Eagle3Config, layer_idx: int = 0) -> None:
        super().__init__()
        eps = config.rms_norm_eps
        self.self_attn = Eagle3Attention(config, layer_idx)
        self.mlp = Eagle3MLP(config)
        self.input_layernorm = Eagle3RMSNorm(config.hidden_size, eps)
        self.hidden_norm = Eagle3RMSNorm(config.hidden_size, eps)
        self.post_attention_layernorm = Eagle3RMSNorm(config.hidden_size, eps)

    def forward(self, embeds, hidden, cos, sin, cache, attention_mask=None):
        x = torch.cat([self.input_layernorm(embeds), self.hidden_norm(hidden)], dim=-1)
        hidden = hidden + self.self_attn(x, cos, sin, cache, attention_mask)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


@dataclass
class Eagle3Output(ModelOutput):
    """``last_hidden_state`` ``[B, n, H]``: the layer output *before* the final norm (what the TTT chain
    feeds back); ``logits`` ``[B, n, V]`` = ``lm_head(norm(last_hidden_state))`` when asked for."""

    last_hidden_state: torch.Tensor | None = None
    logits: torch.Tensor | None = None


@dataclass
class Eagle3Proposal:
    """One greedy TTT chain of ``T`` steps from ``h_0`` at absolute position ``start``.

    ``step_hidden`` ``[B, T, H]``: h_0 .. h_{T-1}, the states the logits come from; ``logits`` ``[B, T, V]``;
    ``tokens`` ``[B, T]``: d_1 .. d_T (argmax); ``verify_input_ids`` ``[B, T + 1]``: [anchor, d_1 .. d_T],
    what the target verifies; ``step_input_ids`` / ``step_position_ids`` ``[B, T]``: the inputs of the T
    chain forwards (d_k at position start + k - 1); ``last_hidden`` ``[B, 1, H]``: h_T, the output of the
    last forward (computed so that the cache holds all T steps, not used for drafting)."""

    step_hidden: torch.Tensor
    logits: torch.Tensor
    tokens: torch.Tensor
    verify_input_ids: torch.Tensor
    step_input_ids: torch.Tensor
    step_position_ids: torch.Tensor
    last_hidden: torch.Tensor


class Eagle3PreTrainedModel(PreTrainedModel):
    config_class = Eagle3Config
    config: Eagle3Config
    base_model_prefix = "eagle3"
    main_input_name = "input_ids"
    _no_split_modules = ["Eagle3DecoderLayer"]
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
        elif isinstance(module, Eagle3RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, Eagle3RotaryEmbedding):
            # Non-persistent buffer: transformers materialises it empty when loading, so recompute it.
            module.inv_freq.copy_(_inverse_frequencies(self.config)[0])


class Eagle3Draft(Eagle3PreTrainedModel):
    """An EAGLE-3 draft. ``Eagle3Draft.from_pretrained(folder)`` (or ``DSparkDraft.from_pretrained``)
    loads DeepSpec's released layout or this library's saved one."""

    def __init__(self, config: Eagle3Config) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.fc = nn.Linear(config.feature_size, config.hidden_size, bias=False)
        self.layers = nn.ModuleList([Eagle3DecoderLayer(config, 0)])
        self.norm = Eagle3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rotary_emb = Eagle3RotaryEmbedding(config)
        self.post_init()
        # Set by generate() (see dspark_hf.integration): the per-draft default policy and the last call's rounds.
        self.verification_policy = None
        self.last_telemetry = None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def new_cache(self) -> DynamicCache:
        """An empty draft KV cache."""
        return DynamicCache()

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``lm_head(norm(hidden))`` for pre-norm hidden states."""
        return self.lm_head(self.norm(hidden))

    def forward(
        self,
        hidden_states: torch.Tensor,
        input_ids: torch.LongTensor,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        compute_logits: bool = False,
        attention_mask: torch.Tensor | None = None,
    ) -> Eagle3Output:
        """One pass of the draft layer over ``n`` rows.

        Args:
            hidden_states: ``[B, n, 5H]`` concatenated target features (projected by ``fc``) or
                ``[B, n, H]`` the draft's own pre-norm states (used as they are).
            input_ids: ``[B, n]``: the token paired with each row (row ``i`` carries the feature of
                position ``i`` and the token of position ``i + 1``).
            position_ids: ``[B, n]`` absolute positions; default: continuing ``past_key_values``.
            past_key_values: the draft cache; the rows' keys and values are appended to it. With rows
                already cached, the new rows attend everything unmasked (see the module docstring).
            attention_mask: optional boolean ``[B, 1, n, cached + n]`` (True: attend), replacing that rule;
                the batched EAGLE-3 chains of several requests use it to hide the padding of their caches.
        """
        if hidden_states.shape[-1] == self.config.hidden_size:
            hidden = hidden_states.to(self.fc.weight.dtype)
        elif hidden_states.shape[-1] == self.fc.in_features:
            hidden = self.fc(hidden_states.to(self.fc.weight.dtype))
        else:
            raise UnsupportedUsageError(
                f"hidden_states are {hidden_states.shape[-1]} wide; an EAGLE-3 draft takes {self.fc.in_features} "
                f"(five target layers) or {self.config.hidden_size} (its own hidden state)."
            )
        embeds = self.embed_tokens(input_ids)
        bsz, n = input_ids.shape
        if position_ids is None:
            start = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(start, start + n, device=input_ids.device).expand(bsz, -1)
        cos, sin = self.rotary_emb(position_ids, hidden.dtype)
        for layer in self.layers:
            hidden = layer(embeds, hidden, cos, sin, past_key_values, attention_mask)
        return Eagle3Output(last_hidden_state=hidden, logits=self.compute_logits(hidden) if compute_logits else None)

    # -- drafting -------------------------------------------------------------------------------------

    @torch.no_grad()
    def extend_context(
        self, features: torch.Tensor, input_ids: torch.LongTensor, position_ids: torch.LongTensor, cache: Cache
    ) -> torch.Tensor:
        """Append committed positions to ``cache`` in one pass; returns their pre-norm hidden ``[B, n, H]``.

        ``features`` ``[B, n, 5H]`` are the target's features of positions ``p .. p+n-1`` and
        ``input_ids`` the tokens of positions ``p+1 .. p+n`` (prefill: the prompt shifted by one, then
        the anchor; after verification: the accepted drafts then the bonus token). On an empty cache the
        pass is causal; on a non-empty one it is unmasked, as in DeepSpec. The last row is ``h_0`` of
        the next :meth:`propose`.
        """
        return self(hidden_states=features, input_ids=input_ids, position_ids=position_ids, past_key_values=cache).last_hidden_state

    @staticmethod
    def crop_cache(cache: Cache, length: int) -> None:
        """Keep the first ``length`` positions of ``cache`` (drops the chain steps after verification)."""
        excess = cache.get_seq_length() - length
        if excess > 0:
            cache.crop(-excess)

    @torch.no_grad()
    def propose(
        self, h0: torch.Tensor, anchor: torch.LongTensor, start: int, cache: Cache, steps: int | None = None, draw=None
    ) -> Eagle3Proposal:
        """The test-time-training chain: ``steps`` (default ``ttt_length``) draft tokens.

        ``h0`` ``[B, H]`` or ``[B, 1, H]`` is the pre-norm hidden state of the last committed position
        (``start - 1``), ``anchor`` ``[B, 1]`` the token at ``start`` (it heads ``verify_input_ids``),
        ``cache`` holds exactly ``start`` positions. For k = 0 .. T-1: ``d_{k+1} = argmax lm_head(norm(h_k))``
        and ``h_{k+1} = draft(h_k, d_{k+1})`` at position ``start + k`` (H-wide, so ``fc`` is skipped). The
        cache ends with ``start + T`` positions.

        ``draw``, when given, replaces the argmax: ``draw(logits [B, V]) -> (token [B], reported [B, V])``
        (generation draws through the target's logits processors, or samples, and ``logits`` then holds
        the ``reported`` rows: the distributions the tokens were drawn from).
        """
        steps = self.config.ttt_length if steps is None else steps
        h = h0.reshape(h0.shape[0], 1, -1)
        bsz = h.shape[0]
        hidden, logits, tokens, positions = [], [], [], []
        for k in range(steps):
            step_logits = self.compute_logits(h)
            if draw is None:
                token = step_logits.argmax(dim=-1)
            else:
                drawn, reported = draw(step_logits[:, -1])
                token, step_logits = drawn.reshape(bsz, 1).to(h.device), reported[:, None]
            position = torch.full((bsz, 1), start + k, dtype=torch.long, device=token.device)
            hidden.append(h)
            logits.append(step_logits)
            tokens.append(token)
            positions.append(position)
            h = self(hidden_states=h, input_ids=token, position_ids=position, past_key_values=cache).last_hidden_state
        drafted = torch.cat(tokens, dim=1)
        return Eagle3Proposal(
            step_hidden=torch.cat(hidden, dim=1),
            logits=torch.cat(logits, dim=1),
            tokens=drafted,
            verify_input_ids=torch.cat([anchor.reshape(bsz, 1).to(drafted), drafted], dim=1),
            step_input_ids=drafted.clone(),
            step_position_ids=torch.cat(positions, dim=1),
            last_hidden=h,
        )

    # -- checkpoints ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load an EAGLE-3 draft from a local folder or a Hub id: DeepSpec's released layout
        (``architectures: Qwen3Eagle3Model``) or this library's (``model_type: dspark_eagle3``).

        Only safetensors are read, and their headers are checked against the config first: a missing,
        unexpected or wrong-shaped tensor is one :class:`~dspark_hf.errors.CheckpointError` line naming it.
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
        return cls._from_folder(folder, raw, str(source), *model_args, **kwargs)

    @classmethod
    def _from_folder(cls, folder: Path, raw: dict, source: str, *model_args, **kwargs) -> "Eagle3Draft":
        """Load from a resolved folder whose parsed config.json is ``raw`` (used by ``DSparkDraft.from_pretrained``)."""
        if checkpoint_format(raw) != EAGLE3:
            raise CheckpointError(f"{source} is not an EAGLE-3 draft: its config has {describe(raw)}.")
        config = kwargs.pop("config", None) or eagle3_config_from_dict(raw, source=f"{source}/{CONFIG_NAME}")
        check_eagle3_weights(config, folder)
        model = super().from_pretrained(folder, *model_args, config=config, use_safetensors=True, **kwargs)
        model.name_or_path = source
        return model


def check_eagle3_weights(config: Eagle3Config, folder: Path) -> None:
    """One :class:`CheckpointError` line unless the safetensors in ``folder`` hold exactly the tensors
    of an ``Eagle3Draft(config)``, with the same shapes. Reads only the files' headers."""
    layout = safetensors_layout(folder)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in Eagle3Draft(config).state_dict().items()}
    missing = sorted(set(expected) - set(layout))
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
