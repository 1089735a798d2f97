"""`Eagle3Objective`: one module whose forward is the whole EAGLE-3 training loss of a draft on one
sequence (the test-time-training chain, the logits of the pairs in the loss, the loss), so that DDP
wraps a single forward, as :class:`~dspark_hf.training.draft_objective.DraftObjective` does for DSpark.
"""

from __future__ import annotations

import torch
from torch import nn

from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft
from dspark_hf.training.eagle3_chain import chain_hidden
from dspark_hf.training.losses import LossParts, eagle3_losses
from dspark_hf.training.packing import ChainRows


class Eagle3Objective(nn.Module):
    """Wraps an :class:`Eagle3Draft`; ``forward(features, rows, target_logits)`` returns :class:`LossParts`.

    ``features`` ``[S, 5H]``; ``rows`` (:func:`~dspark_hf.training.packing.chain_rows`); ``target_logits``
    ``[R, T, V]``: the target's logits at ``rows.target_positions``. Logits of the draft are computed only
    for the (row, step) pairs in ``rows.mask`` (the others have weight 0 in DeepSpec's loss).
    """

    def __init__(self, draft: Eagle3Draft) -> None:
        super().__init__()
        self.draft = draft

    def forward(self, features: torch.Tensor, rows: ChainRows, target_logits: torch.Tensor) -> LossParts:
        draft = self.draft
        steps = rows.mask.shape[1]
        hidden = chain_hidden(draft, features, rows.input_ids, rows.rows, steps)
        mask = rows.mask.to(hidden.device)
        step_of = torch.arange(steps, device=hidden.device).expand_as(mask)
        return eagle3_losses(
            draft.compute_logits(hidden[mask]),
            target_logits.to(hidden.device)[mask],
            step_of[mask],
            rows.labels.to(hidden.device)[mask],
            rows.row_weight,
            draft.config.step_loss_decay,
        )
