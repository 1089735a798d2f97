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
have appended, and the blocks are drawn from the rows of the output
(:func:`~dspark_hf.drafting.block.draw_blocks`: left to right with the sequential head, every request
at once per slot, or request by request with the target's logits processors on each request's
sequence). The inputs (positions, mask, anchors) are built on the host and moved once; the prefixes may
live on the host. Padding changes no attended value, so the
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
from dspark_hf.drafting.block import DraftBlock, anchor_ids, draw_blocks
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
    feats = torch.nn.utils.rnn.pad_sequence([f[0].to(device) for f in features], batch_first=True)
    positions, mask = _positions_and_mask(cached, new, starts, width_c, width_n, gamma)
    block_ids = torch.full((requests, gamma), cfg.mask_token_id, dtype=torch.long, device=device)
    block_ids[:, 0] = anchor_ids(prefixes, device)
    padded = right_aligned([ctx.cache for ctx in contexts], cached, cfg.num_hidden_layers)
    out = draft(input_ids=block_ids, context_features=feats, position_ids=positions.to(device), attention_mask=mask.to(device),
                past_key_values=padded)
    for r, ctx in enumerate(contexts):
        keep = torch.cat([torch.arange(width_c - cached[r], width_c), torch.arange(width_c, width_c + new[r])])
        ctx.cache = request_rows(padded, r, keep, cfg.num_hidden_layers)
        ctx.committed = starts[r]
    return draw_blocks(draft, out.last_hidden_state, out.logits, prefixes, logits_processor, do_sample)


def _positions_and_mask(cached: list[int], new: list[int], starts: list[int], width_c: int, width_n: int, gamma: int):
    """On the host: ``positions [R, N + gamma]`` (request ``r``'s new feature rows at ``cached_r ..
    start_r - 1``, padding rows 0, then its block at ``start_r .. start_r + gamma - 1``) and the boolean
    ``mask [R, 1, gamma, C + N + gamma]`` (its cached rows, its new rows and the block visible; padding
    hidden). Built in a few vectorised host operations and moved to the device once, rather than as
    ``6 R`` small device writes."""
    requests = len(cached)
    cached_t, new_t, starts_t = (torch.tensor(x, dtype=torch.long)[:, None] for x in (cached, new, starts))
    rows = torch.arange(width_n)[None]
    new_positions = torch.where(rows < new_t, cached_t + rows, torch.zeros((), dtype=torch.long))
    block_positions = starts_t + torch.arange(gamma)[None]
    positions = torch.cat([new_positions, block_positions], dim=1)
    slots = torch.arange(width_c + width_n + gamma)[None]
    visible = ((slots >= width_c - cached_t) & (slots < width_c + new_t)) | (slots >= width_c + width_n)
    mask = visible[:, None, None, :].expand(requests, 1, gamma, width_c + width_n + gamma).contiguous()
    return positions, mask
