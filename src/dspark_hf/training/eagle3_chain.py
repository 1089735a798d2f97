"""The EAGLE-3 test-time-training chain unrolled for training (DeepSpec's recipe), on chosen rows.

DeepSpec trains its EAGLE-3 draft by running the draft ``ttt_length`` times over the whole sequence,
each pass feeding back the previous pass's pre-norm hidden states, with the token and RoPE position
shifted by one per step and an attention mask that makes row ``i`` of step ``k`` see exactly what
the inference chain drafting from anchor ``i + 1`` sees: the step-0 keys of rows ``0 .. i`` (the causal
prefill cache) and row ``i``'s own keys of steps ``1 .. k`` (the chain's earlier steps), nothing else.
Step 0 is the causal prefill; step ``k`` of row ``i`` is inference's chain step ``k`` teacher-forced
with the true tokens.

Row ``i``'s step ``k >= 1`` needs only its own chain and the step-0 keys and values, which depend on the
inputs alone (not on any attention output). So :func:`chain_hidden` computes the step-0 keys and
values of every row, and everything else (queries, attention, MLP, later steps) only for the rows the
loss reads: the whole chain costs ``R * T`` rows of one layer plus the ``S``-row projections.

The layer's computation is :class:`~dspark_hf.models.eagle3.modeling_eagle3.Eagle3DecoderLayer`'s
(same modules, applied here row-wise with the chain's mask instead of a cache);
``tests/test_training_eagle3.py`` checks it against :meth:`Eagle3Draft.extend_context` and
:meth:`Eagle3Draft.propose` on the same inputs.
"""

from __future__ import annotations

import torch

from dspark_hf.models.rope import apply_rope


def _heads(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """``[n, heads * head_dim]`` -> ``[1, heads, n, head_dim]``."""
    return x.view(1, x.shape[0], heads, head_dim).transpose(1, 2)


def chain_attention(q, k0, v0, visible, diag_k, diag_v, scale: float) -> torch.Tensor:
    """Attention of the chain's queries ``q`` ``[1, nh, R, d]`` over the step-0 keys / values ``k0`` / ``v0``
    ``[1, nkv, S, d]`` where ``visible`` ``[R, S]`` (the causal prefix of each row) and over each row's own
    keys / values of the earlier chain steps (``diag_k`` / ``diag_v``: lists of ``[1, nkv, R, d]``).
    Returns ``[R, nh * d]``."""
    groups = q.shape[1] // k0.shape[1]
    expand = (lambda t: t.repeat_interleave(groups, dim=1)) if groups > 1 else (lambda t: t)
    scores = [(q @ expand(k0).transpose(-1, -2) * scale).masked_fill(~visible, float("-inf"))]
    scores += [(q * expand(k)).sum(-1, keepdim=True) * scale for k in diag_k]
    probs = torch.softmax(torch.cat(scores, dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
    seq_len = k0.shape[2]
    out = probs[..., :seq_len] @ expand(v0)
    for m, v in enumerate(diag_v):
        out = out + probs[..., seq_len + m : seq_len + m + 1] * expand(v)
    return out[0].transpose(0, 1).reshape(q.shape[2], -1)


def chain_hidden(draft, features: torch.Tensor, input_ids: torch.Tensor, rows: torch.Tensor, steps: int) -> torch.Tensor:
    """The pre-norm hidden states ``h_0 .. h_{steps-1}`` of the chain at ``rows``: ``[R, steps, H]``.

    ``features`` ``[S, 5H]``: the target's layer outputs of the sequence; ``input_ids`` ``[S]`` its tokens.
    ``h_k`` of row ``i`` is what inference's chain step ``k`` computes when drafting from anchor ``i + 1``
    (with the true tokens fed back); its logits ``lm_head(norm(h_k))`` predict the token at ``i + k + 2``.
    """
    layer = draft.layers[0]
    attn = layer.self_attn
    nh, nkv, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    device, dtype = draft.fc.weight.device, draft.fc.weight.dtype
    seq_len = input_ids.shape[0]
    ids = torch.cat([input_ids, input_ids.new_zeros(steps + 1)]).to(device)  # DeepSpec pads the shifted ids with 0
    rows = rows.to(device)

    def layer_inputs(tokens, hidden):
        return torch.cat([layer.input_layernorm(draft.embed_tokens(tokens)), layer.hidden_norm(hidden)], dim=-1)

    def rope(x, heads, positions):
        cos, sin = draft.rotary_emb(positions[None], dtype)
        return apply_rope(_heads(x, heads, hd), cos, sin)

    # Step 0 over every row: the keys and values of the causal prefill.
    hidden_all = draft.fc(features.to(device, dtype))
    x_all = layer_inputs(ids[1 : seq_len + 1], hidden_all)
    all_positions = torch.arange(seq_len, device=device)
    k0 = rope(attn.k_norm(attn.k_proj(x_all).view(seq_len, nkv, hd)).view(seq_len, -1), nkv, all_positions)
    v0 = _heads(attn.v_proj(x_all), nkv, hd)
    visible = all_positions[None, :] <= rows[:, None]
    hidden, x = hidden_all[rows], x_all[rows]
    diag_k, diag_v, out = [], [], []
    for k in range(steps):
        positions = rows + k
        if k > 0:
            x = layer_inputs(ids[rows + k + 1], hidden)
            diag_k.append(rope(attn.k_norm(attn.k_proj(x).view(-1, nkv, hd)).view(x.shape[0], -1), nkv, positions))
            diag_v.append(_heads(attn.v_proj(x), nkv, hd))
        q = rope(attn.q_norm(attn.q_proj(x).view(-1, nh, hd)).view(x.shape[0], -1), nh, positions)
        hidden = hidden + attn.o_proj(chain_attention(q, k0, v0, visible, diag_k, diag_v, attn.scaling))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        out.append(hidden)
    return torch.stack(out, dim=1)
