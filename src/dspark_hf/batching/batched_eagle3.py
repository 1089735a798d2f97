"""EAGLE-3 drafting for every decoding request of a step: per-request extends, then one batched chain.

Each request keeps its own :class:`~dspark_hf.drafting.eagle3_round.Eagle3Context` (a ``DynamicCache``
and ``committed``). A round is the batch-1 round (:func:`~dspark_hf.drafting.eagle3_round.eagle3_round`,
DeepSpec's protocol) for all of them at once:

1. per request (the rows are ragged, and whether the extend is causal depends on the request's cache
   being empty): crop the cache to ``committed`` and extend it with the verified features
   (:meth:`~dspark_hf.models.eagle3.Eagle3Draft.extend_context`); its last row is ``h_0``;
2. the ``ttt_length`` chain steps batched over the requests: their caches copied once, right-aligned, into
   a padded cache of ``C = max c_r`` slots; each step is one forward of ``R`` rows (``h_k`` and the token
   drawn from it, at the request's own position ``start_r + k``) with a boolean mask that hides the
   padding slots, so every row attends exactly its own cached rows and chain steps, as at batch 1; each
   token drawn per request by :func:`~dspark_hf.drafting.block.draw_token` through the target's logits
   processors on that request's sequence;
3. each request's cache becomes its own rows of the padded cache (its cached rows and its ``T`` chain
   steps), what the batch-1 round leaves.

Padding changes no attended value, so tokens and logits equal the batch-1 round's up to floating-point
reduction order (an ``R``-row matrix product instead of ``R`` one-row ones). Cost: ``R`` extend forwards
and ``T`` chain forwards of ``R`` rows, instead of ``R (T + 1)`` forwards, plus one copy of the cached rows
in and out.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from dspark_hf.drafting.block import DraftBlock, draw_token
from dspark_hf.drafting.eagle3_round import Eagle3Context, eagle3_round


def _extend(draft, context: Eagle3Context, features: torch.Tensor, prefix_ids: torch.LongTensor) -> torch.Tensor:
    """Step 1 for one request: crop, extend with ``features`` of positions ``committed .. n - 2``; returns ``h_0`` ``[1, H]``."""
    start, committed = prefix_ids.shape[1] - 1, context.committed
    if features.shape[1] != start - committed:
        raise ValueError(f"eagle3 chains: the features of positions {committed}..{start - 1} ({start - committed} rows) are needed, "
                         f"got {features.shape[1]}.")
    device = draft.device
    draft.crop_cache(context.cache, committed)
    positions = torch.arange(committed, start, device=device)[None]
    hidden = draft.extend_context(features.to(device), prefix_ids[:, committed + 1 :].to(device), positions, context.cache)
    context.committed = start
    return hidden[:, -1]


@torch.no_grad()
def eagle3_chains(draft, contexts: list[Eagle3Context], features: list[torch.Tensor], prefixes: list[torch.LongTensor],
                  logits_processor=None, do_sample: bool = False) -> list[DraftBlock]:
    """One EAGLE-3 round for each request (module docstring); same contract, per request, as
    :func:`~dspark_hf.drafting.eagle3_round.eagle3_round`. ``contexts`` are updated."""
    if len(contexts) == 1:
        return [eagle3_round(draft, contexts[0], features[0], prefixes[0], logits_processor, do_sample)]
    device = draft.device
    steps = draft.config.ttt_length
    requests = len(contexts)
    h = torch.stack([_extend(draft, c, f, p) for c, f, p in zip(contexts, features, prefixes)])  # [R, 1, H]
    starts = [p.shape[1] - 1 for p in prefixes]
    cached = [c.cache.get_seq_length() for c in contexts]
    width = max(cached)
    layers = len(contexts[0].cache.layers)
    padded = DynamicCache()
    for layer in range(layers):
        like = contexts[0].cache.layers[layer]
        keys = like.keys.new_zeros(requests, like.keys.shape[1], width, like.keys.shape[3])
        values = like.values.new_zeros(requests, like.values.shape[1], width, like.values.shape[3])
        for r, c in enumerate(contexts):
            own = c.cache.layers[layer]
            keys[r, :, width - cached[r] :] = own.keys[0]
            values[r, :, width - cached[r] :] = own.values[0]
        padded.update(keys, values, layer)
    sequences = [p.to(device) for p in prefixes]
    tokens, logits = [], []
    for k in range(steps):
        step_logits = draft.compute_logits(h)[:, -1]  # [R, V]
        drawn, reported = [], []
        for r in range(requests):
            token, shown = draw_token(step_logits[r : r + 1], sequences[r], logits_processor, do_sample)
            sequences[r] = torch.cat([sequences[r], token[:, None].to(device)], dim=-1)
            drawn.append(token.to(device))
            reported.append(shown)
        step_tokens = torch.stack(drawn)  # [R, 1]
        tokens.append(step_tokens)
        logits.append(torch.cat(reported)[:, None])  # [R, 1, V]
        mask = torch.zeros(requests, 1, 1, width + k + 1, dtype=torch.bool, device=device)
        for r in range(requests):
            mask[r, 0, 0, width - cached[r] :] = True
        positions = torch.tensor([[s + k] for s in starts], dtype=torch.long, device=device)
        h = draft(hidden_states=h, input_ids=step_tokens, position_ids=positions, past_key_values=padded, attention_mask=mask).last_hidden_state
    for r, c in enumerate(contexts):
        own = DynamicCache()
        for layer in range(layers):
            keys, values = padded.layers[layer].keys, padded.layers[layer].values
            own.update(keys[r : r + 1, :, width - cached[r] :].contiguous(), values[r : r + 1, :, width - cached[r] :].contiguous(), layer)
        c.cache = own
    drafted = torch.cat(tokens, dim=1)  # [R, T]
    every = torch.cat(logits, dim=1)  # [R, T, V]
    return [DraftBlock(tokens=drafted[r : r + 1], logits=every[r : r + 1], confidences=None) for r in range(requests)]
