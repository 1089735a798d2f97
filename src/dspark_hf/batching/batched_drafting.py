"""One batched draft forward for every decoding request of a step.

Each request keeps its own draft context (:class:`~dspark_hf.drafting.round.DraftContext`: a
``DynamicCache`` of its context rows, ``c_r`` of them) and brings ``n_r`` new feature rows; the
contexts are ragged, so the forward runs on a padded batch:

- a temporary cache whose keys and values are every request's cached rows, right-aligned in ``C =
  max c_r`` slots (the slots before a request's rows are padding);
- the new feature rows, left-aligned in ``N = max n_r`` slots, then the ``[anchor, MASK x (gamma-1)]``
  block; every row has its own absolute positions (RoPE), padding rows position 0;
- a boolean attention mask ``[R, 1, gamma, C + N + gamma]`` that hides the padding slots.

After the forward each request's cache becomes its real cached rows followed by its real new rows
(copied out of the padded cache), exactly what :func:`~dspark_hf.drafting.round.draft_round` would
have appended, and each block is drawn from its own row of the output
(:func:`~dspark_hf.drafting.block.draw_block`, left to right with the sequential head and the
target's logits processors on that request's sequence). Padding changes no attended value, so the
blocks equal the per-request rounds' up to floating-point reduction order. Cost: one forward of
``R x (N + gamma)`` rows instead of ``R`` forwards, plus copying every request's cached context rows
into the padded cache and back once per step (``sum_r c_r`` rows per draft layer, the price of
keeping per-request ``DynamicCache`` contexts rather than a paged draft cache).

EAGLE-3 drafts (:class:`~dspark_hf.models.eagle3.Eagle3Draft`) keep an
:class:`~dspark_hf.drafting.eagle3_round.Eagle3Context` per request (:func:`new_context`) and draft
through :func:`~dspark_hf.batching.batched_eagle3.eagle3_chains`: the per-request extends, then the
test-time-training chain steps batched over the requests.
"""

from __future__ import annotations

import torch

from dspark_hf.batching.batched_eagle3 import eagle3_chains
from dspark_hf.batching.padded_cache import request_rows, right_aligned
from dspark_hf.drafting.block import DraftBlock, draw_block
from dspark_hf.drafting.eagle3_round import Eagle3Context
from dspark_hf.drafting.round import DraftContext, draft_round
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft


def new_context(draft) -> DraftContext | Eagle3Context:
    """A fresh per-request drafting state for ``draft``: an EAGLE-3 draft cache, else a DSpark context."""
    return Eagle3Context(draft) if isinstance(draft, Eagle3Draft) else DraftContext(draft)


@torch.no_grad()
def draft_rounds(draft, contexts: list[DraftContext], features: list[torch.Tensor], prefixes: list[torch.LongTensor],
                 logits_processor=None, do_sample: bool = False) -> list[DraftBlock]:
    """Draft one block for each request in one forward; same contract, per request, as
    :func:`~dspark_hf.drafting.round.draft_round` (``features[r]`` ``[1, start_r - committed_r, F]``,
    ``prefixes[r]`` ``[1, n_r]``); ``contexts`` are updated. EAGLE-3 drafts: batched chains
    (module docstring)."""
    if isinstance(draft, Eagle3Draft):
        return eagle3_chains(draft, contexts, features, prefixes, logits_processor, do_sample)
    if len(contexts) == 1:
        return [draft_round(draft, contexts[0], features[0], prefixes[0], logits_processor, do_sample)]
    cfg = draft.config
    device = draft.device
    gamma = cfg.block_size
    requests = len(contexts)
    starts = [p.shape[1] - 1 for p in prefixes]
    cached = [ctx.committed for ctx in contexts]
    new = [f.shape[1] for f in features]
    for r in range(requests):
        if new[r] != starts[r] - cached[r]:
            raise ValueError(f"draft_rounds: request {r} needs {starts[r] - cached[r]} feature rows, got {new[r]}.")
    width_c, width_n = max(cached), max(new)
    feats = features[0].new_zeros(requests, width_n, features[0].shape[-1]).to(device)
    positions = torch.zeros(requests, width_n + gamma, dtype=torch.long, device=device)
    mask = torch.zeros(requests, 1, gamma, width_c + width_n + gamma, dtype=torch.bool, device=device)
    block_ids = torch.full((requests, gamma), cfg.mask_token_id, dtype=torch.long, device=device)
    for r in range(requests):
        feats[r, : new[r]] = features[r][0].to(device)
        positions[r, : new[r]] = torch.arange(cached[r], starts[r], device=device)
        positions[r, width_n:] = torch.arange(starts[r], starts[r] + gamma, device=device)
        mask[r, 0, :, width_c - cached[r] : width_c + new[r]] = True
        mask[r, 0, :, width_c + width_n :] = True
        block_ids[r, 0] = prefixes[r][0, -1]
    padded = right_aligned([ctx.cache for ctx in contexts], cached, cfg.num_hidden_layers)
    out = draft(input_ids=block_ids, context_features=feats, position_ids=positions, attention_mask=mask, past_key_values=padded)
    for r, ctx in enumerate(contexts):
        keep = torch.cat([torch.arange(width_c - cached[r], width_c), torch.arange(width_c, width_c + new[r])])
        ctx.cache = request_rows(padded, r, keep, cfg.num_hidden_layers)
        ctx.committed = starts[r]
    return [
        draw_block(draft, out.last_hidden_state[r : r + 1], out.logits[r : r + 1], prefixes[r].to(device), logits_processor, do_sample)
        for r in range(requests)
    ]
