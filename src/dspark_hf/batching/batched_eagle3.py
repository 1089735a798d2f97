"""EAGLE-3 drafting for every decoding request of a step: per-request extends, then one batched chain.

Each request keeps its own :class:`~dspark_hf.drafting.eagle3_round.Eagle3Context` (a ``DynamicCache``
and ``committed``). A round is the batch-1 round (:func:`~dspark_hf.drafting.eagle3_round.eagle3_round`,
DeepSpec's protocol) for all of them at once:

1. per request (the rows are ragged, and whether the extend is causal depends on the request's cache
   being empty): crop the cache to ``committed`` and extend it with the verified features
   (:func:`~dspark_hf.drafting.eagle3_round.extend_committed`, the batch-1 round's own); its last row is
   ``h_0``;
2. the ``ttt_length`` chain steps batched over the requests: their caches copied once, right-aligned, into
   a padded cache of ``C = max c_r`` slots (:mod:`.padded_cache`); each step is one forward of ``R`` rows (``h_k`` and the token
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

from dspark_hf.batching.padded_cache import request_rows, right_aligned
from dspark_hf.drafting.block import DraftBlock, draw_token
from dspark_hf.drafting.eagle3_round import Eagle3Context, eagle3_round, extend_committed


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
    sequences = [p.to(device) for p in prefixes]
    h = torch.stack([extend_committed(draft, c, f, p)[:, -1] for c, f, p in zip(contexts, features, sequences)])  # [R, 1, H]
    cached = [c.cache.get_seq_length() for c in contexts]
    width = max(cached)
    layers = len(contexts[0].cache.layers)
    padded = right_aligned([c.cache for c in contexts], cached, layers)
    own_slots = torch.arange(width, device=device)[None, :] >= torch.tensor([width - n for n in cached], device=device)[:, None]
    starts = torch.tensor([[p.shape[1] - 1] for p in prefixes], dtype=torch.long, device=device)  # [R, 1]
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
        # each row sees its own cached rows and every chain step so far, this one included
        mask = torch.cat([own_slots, own_slots.new_ones(requests, k + 1)], dim=1)[:, None, None, :]
        h = draft(hidden_states=h, input_ids=step_tokens, position_ids=starts + k, past_key_values=padded, attention_mask=mask).last_hidden_state
    for r, c in enumerate(contexts):
        c.cache = request_rows(padded, r, torch.arange(width - cached[r], width + steps), layers)
    drafted = torch.cat(tokens, dim=1)  # [R, T]
    every = torch.cat(logits, dim=1)  # [R, T, V]
    return [DraftBlock(tokens=drafted[r : r + 1], logits=every[r : r + 1], confidences=None) for r in range(requests)]
