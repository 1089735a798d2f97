"""One drafting round: the target's new features into the draft's context cache, one parallel block
forward on ``[anchor, MASK x (gamma - 1)]``, then the block drawn left to right (:mod:`.block`).

:class:`DraftContext` is the per-generation state: the draft's cache of context rows and how many
target positions it holds. A round for a sequence ``prefix_ids`` of length ``n`` (its last token is
the anchor, at position ``n - 1``) takes the features of positions ``committed .. n - 2``, exactly
``n - 1 - committed`` rows; afterwards the cache holds positions ``0 .. n - 2``. Only context rows are
cached, so nothing needs cutting back after verification: the next round's features start where this
round's ended. Both the candidate generator and the cost profiler run rounds through :func:`draft_round`.
"""

from __future__ import annotations

import copy

import torch
from transformers.generation.logits_process import LogitsProcessorList

from dspark_hf.drafting.block import DraftBlock, draw_block


class DraftContext:
    """The draft's context cache for one sequence and the number of positions it holds."""

    def __init__(self, draft) -> None:
        self.cache = draft.new_cache()
        self.committed = 0

    def copy(self) -> "DraftContext":
        """An independent copy (the profiler times rounds on copies of one prefilled context)."""
        return copy.deepcopy(self)


@torch.no_grad()
def draft_round(
    draft,
    context: DraftContext,
    features: torch.Tensor,
    prefix_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList | None = None,
    do_sample: bool = False,
) -> DraftBlock:
    """Draft ``draft.config.block_size`` tokens after ``prefix_ids`` ``[1, n]``.

    ``features`` ``[1, n - 1 - context.committed, F]``: the target features of the positions the
    context does not hold yet. Returns the drawn block; ``context`` then holds positions ``0 .. n - 2``.
    """
    cfg = draft.config
    device = draft.device
    start = prefix_ids.shape[1] - 1  # the anchor's position
    if features.shape[1] != start - context.committed:
        raise ValueError(
            f"draft_round needs the features of positions {context.committed}..{start - 1} "
            f"({start - context.committed} rows), got {features.shape[1]}."
        )
    positions = torch.arange(context.committed, start + cfg.block_size, device=device)[None]
    block_ids = torch.full((1, cfg.block_size), cfg.mask_token_id, dtype=torch.long, device=device)
    block_ids[0, 0] = prefix_ids[0, -1]
    out = draft(input_ids=block_ids, context_features=features.to(device), position_ids=positions, past_key_values=context.cache)
    context.committed = start
    return draw_block(draft, out.last_hidden_state, out.logits, prefix_ids.to(device), logits_processor, do_sample)
