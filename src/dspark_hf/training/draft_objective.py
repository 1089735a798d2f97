"""`DraftObjective`: one module whose forward is the whole training loss of a draft on one sequence's
packed blocks, so that DDP / FSDP wrap a single forward (base logits, teacher-forced sequential head,
confidence head and losses all inside it).
"""

from __future__ import annotations

import torch
from torch import nn

from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.training.losses import LossParts, dspark_losses
from dspark_hf.training.packing import PackedBlocks


def packed_forward(draft: DSparkDraft, features: torch.Tensor, packed: PackedBlocks):
    """The draft backbone on packed blocks: returns ``(hidden [N, gamma, H], base_logits [N, gamma, V])``
    for ``features [S, F]`` and ``packed`` (one sequence)."""
    n, gamma = packed.block_ids.shape
    device = draft.fc.weight.device
    out = draft(
        input_ids=packed.block_ids.reshape(1, n * gamma).to(device),
        context_features=features[None].to(device),
        position_ids=packed.positions[None].to(device),
        attention_mask=packed.attention_mask[None, None].to(device),
    )
    return out.last_hidden_state.view(n, gamma, -1), out.logits.view(n, gamma, -1)


class DraftObjective(nn.Module):
    """Wraps a :class:`DSparkDraft`; ``forward(features, packed, target_logits)`` returns :class:`LossParts`."""

    def __init__(self, draft: DSparkDraft) -> None:
        super().__init__()
        self.draft = draft

    def forward(self, features: torch.Tensor, packed: PackedBlocks, target_logits: torch.Tensor) -> LossParts:
        draft = self.draft
        hidden, base = packed_forward(draft, features, packed)
        prev = packed.prev_ids.to(hidden.device)
        corrected = base
        if draft.markov_head is not None:
            corrected = base + draft.markov_head.teacher_forced(prev, hidden).to(base.dtype)
        confidence = draft.confidence_logits(hidden, prev)
        return dspark_losses(corrected, target_logits, packed.labels.to(hidden.device), packed.valid.to(hidden.device), confidence,
                             draft_vocab_ids=getattr(draft, "draft_vocab_ids", None))
