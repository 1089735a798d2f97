"""One EAGLE-3 drafting round, DeepSpec's protocol: the committed positions into the draft cache, then
the test-time-training chain of ``ttt_length`` tokens.

:class:`Eagle3Context` is the per-generation state: the draft's KV cache and ``committed``, the number
of positions it holds as committed rows (everything after them is the previous round's chain). A round
for a sequence ``prefix_ids`` of length ``n`` (its last token is the anchor, at position ``n - 1``):

1. crop the cache to ``committed`` (drops the previous chain's ``ttt_length`` steps);
2. extend it with the target's features of positions ``committed .. n - 2`` (exactly
   ``n - 1 - committed`` rows), row ``i`` paired with the token at ``i + 1``, at RoPE positions
   ``committed .. n - 2`` (:meth:`Eagle3Draft.extend_context`: causal on the first round's empty cache,
   the prefill; unmasked afterwards, the after-verification extend of DeepSpec's ``_update``, whose rows
   are the verified ``acc + 1`` ones: the accepted drafts and the target's own token);
3. from the last extended row ``h_0``, chain ``ttt_length`` tokens from ``start = n - 1``
   (:meth:`Eagle3Draft.propose`), each drawn by :func:`.block.draw_token` through the target's logits
   processors (argmax when greedy, a sample otherwise), and report the distribution each was drawn from.

The state between rounds is the cache and ``committed`` (after the round: ``n - 1``); the last hidden
state the next chain starts from is the next extend's last row, recomputed from the verified features.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import LogitsProcessorList

from dspark_hf.drafting.block import DraftBlock, draw_token


class Eagle3Context:
    """The draft cache of one sequence and the number of committed positions it holds."""

    def __init__(self, draft) -> None:
        self.cache = draft.new_cache()
        self.committed = 0


@torch.no_grad()
def extend_committed(draft, context: Eagle3Context, features: torch.Tensor, prefix_ids: torch.LongTensor) -> torch.Tensor:
    """Steps 1 and 2 of a round for ``prefix_ids`` ``[1, n]``: crop ``context``'s cache to its committed
    positions and extend it with ``features`` ``[1, n - 1 - context.committed, 5H]`` (positions
    ``committed .. n - 2``); ``context`` then holds ``0 .. n - 2`` as committed rows. Returns the
    extended rows' pre-norm hidden states ``[1, n - 1 - committed, H]`` (the last is the chain's ``h_0``)."""
    device = draft.device
    start = prefix_ids.shape[1] - 1  # the anchor's position
    committed = context.committed
    if features.shape[1] != start - committed:
        raise ValueError(
            f"eagle3_round needs the features of positions {committed}..{start - 1} ({start - committed} rows), "
            f"got {features.shape[1]}."
        )
    draft.crop_cache(context.cache, committed)
    positions = torch.arange(committed, start, device=device)[None]
    hidden = draft.extend_context(features.to(device), prefix_ids[:, committed + 1 :].to(device), positions, context.cache)
    context.committed = start
    return hidden


@torch.no_grad()
def eagle3_round(
    draft,
    context: Eagle3Context,
    features: torch.Tensor,
    prefix_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList | None = None,
    do_sample: bool = False,
) -> DraftBlock:
    """Draft ``draft.config.ttt_length`` tokens after ``prefix_ids`` ``[1, n]``.

    ``features`` ``[1, n - 1 - context.committed, 5H]``: the target features of the positions the
    cache does not hold as committed yet. Returns the chain as a block without confidences; ``context``
    then holds positions ``0 .. n - 2`` as committed rows, followed by the chain's steps.
    """
    start = prefix_ids.shape[1] - 1  # the anchor's position
    prefix_ids = prefix_ids.to(draft.device)
    hidden = extend_committed(draft, context, features, prefix_ids)

    sequence = prefix_ids

    def draw(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal sequence
        token, reported = draw_token(logits, sequence, logits_processor, do_sample)
        sequence = torch.cat([sequence, token[:, None].to(sequence.device)], dim=-1)
        return token, reported

    proposal = draft.propose(hidden[:, -1], prefix_ids[:, -1:], start, context.cache, draw=draw)
    return DraftBlock(tokens=proposal.tokens, logits=proposal.logits, confidences=None)
