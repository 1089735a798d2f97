"""The DeepSpec training losses of a DSpark draft on packed blocks of one sequence.

A sequence ``x_0 .. x_{S-1}`` with a loss mask (answer tokens), the target's features of every position
and its logits. Each anchor ``a`` becomes a block ``[x_a, MASK x (gamma-1)]`` at positions
``a .. a+gamma-1`` that sees the context rows ``0 .. a-1`` and its own slots (the layout of one
decoding round, where the anchor is the last committed token); all blocks are packed after the context
and separated by a block mask. Slot ``k`` predicts ``x_{a+k+1}``; a slot is valid while that token
exists and is an answer token (cut at the first invalid slot).

Per valid slot, weighted by ``w_k = exp(-k / 4)`` (weighted mean over slots):
``0.1 * CE(corrected, x_{a+k+1}) + 0.9 * ||softmax(corrected) - softmax(target)||_1
+ 1.0 * BCE(confidence, 1 - TV(corrected, target))`` with the TV target detached; corrected logits are
the base logits plus the sequential head's bias with teacher forcing (previous token = true token).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CE_WEIGHT, L1_WEIGHT, CONFIDENCE_WEIGHT = 0.1, 0.9, 1.0
SLOT_DECAY = 4.0


def sample_anchors(loss_mask: torch.Tensor, num_anchors: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Up to ``num_anchors`` sorted positions ``a`` where ``x_a`` and ``x_{a+1}`` are both answer tokens."""
    mask = loss_mask.bool().cpu()
    candidates = torch.nonzero(mask[:-1] & mask[1:]).flatten()
    if candidates.numel() > num_anchors:
        pick = torch.randperm(candidates.numel(), generator=generator)[:num_anchors]
        candidates = candidates[pick]
    return candidates.sort().values


def packed_blocks(input_ids: torch.Tensor, anchors: torch.Tensor, block_size: int, mask_token_id: int):
    """Block inputs ``[1, A*gamma]``, their positions ``[A*gamma]`` and the block mask ``[1, 1, A*gamma, S + A*gamma]``
    (True = attend) for context rows ``0 .. S-1`` followed by the blocks."""
    seq_len, device = input_ids.shape[0], input_ids.device
    num = anchors.shape[0]
    slots = torch.arange(block_size, device=device)
    block_ids = torch.full((num, block_size), mask_token_id, dtype=torch.long, device=device)
    block_ids[:, 0] = input_ids[anchors]
    positions = (anchors[:, None] + slots[None]).reshape(-1)
    rows_anchor = anchors.repeat_interleave(block_size)
    sees_context = torch.arange(seq_len, device=device)[None, :] < rows_anchor[:, None]
    block_of_row = torch.arange(num, device=device).repeat_interleave(block_size)
    sees_block = block_of_row[:, None] == block_of_row[None, :]
    mask = torch.cat([sees_context, sees_block], dim=1)[None, None]
    return block_ids.reshape(1, -1), positions, mask


def block_losses(
    draft: nn.Module,
    features: torch.Tensor,
    target_logits: torch.Tensor,
    input_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    anchors: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """``{"loss", "ce", "l1", "bce"}`` (scalars; ``loss`` carries the gradient) for one sequence.

    Args:
        features: ``[1, S, F]`` the target's features at every position (``TargetFeatureTap.features``).
        target_logits: ``[1, S, V]`` the target's logits at every position.
        input_ids, loss_mask: ``[S]`` the sequence and its answer-token mask.
        anchors: ``[A]`` anchor positions (:func:`sample_anchors`).
    """
    cfg = draft.config
    gamma, seq_len = cfg.block_size, input_ids.shape[0]
    block_ids, block_pos, mask = packed_blocks(input_ids, anchors, gamma, cfg.mask_token_id)
    position_ids = torch.cat([torch.arange(seq_len, device=input_ids.device), block_pos])[None]
    out = draft(input_ids=block_ids, context_features=features, position_ids=position_ids, attention_mask=mask)
    num = anchors.shape[0]
    hidden = out.last_hidden_state.reshape(num, gamma, -1)
    logits = out.logits.float().reshape(num, gamma, -1)

    pos = block_pos.reshape(num, gamma)  # slot k sits at a + k and predicts x_{a+k+1}
    nxt = (pos + 1).clamp(max=seq_len - 1)
    valid = (pos + 1 < seq_len) & loss_mask.bool()[nxt]
    valid = valid.long().cumprod(dim=1).bool()
    prev = input_ids[pos.clamp(max=seq_len - 1)]
    if draft.markov_head is not None:
        logits = logits + draft.markov_head.teacher_forced(prev, hidden).float()
    true_next = input_ids[nxt]
    target_probs = torch.softmax(target_logits[0, pos.clamp(max=seq_len - 1)].float(), dim=-1)

    ce = F.cross_entropy(logits.flatten(0, 1), true_next.flatten(), reduction="none").view(num, gamma)
    l1 = (torch.softmax(logits, dim=-1) - target_probs).abs().sum(-1)
    per_slot = CE_WEIGHT * ce + L1_WEIGHT * l1
    bce = torch.zeros_like(l1)
    conf = draft.confidence_logits(hidden, prev)
    if conf is not None:
        survive = (1.0 - 0.5 * l1).detach().clamp(0.0, 1.0)
        bce = F.binary_cross_entropy_with_logits(conf.float().view(num, gamma), survive, reduction="none")
        per_slot = per_slot + CONFIDENCE_WEIGHT * bce
    decay = torch.exp(-torch.arange(gamma, device=logits.device, dtype=torch.float) / SLOT_DECAY)
    weights = decay[None] * valid.float()
    total = weights.sum().clamp(min=math.ulp(1.0))

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * weights).sum() / total

    return {"loss": mean(per_slot), "ce": mean(ce).detach(), "l1": mean(l1).detach(), "bce": mean(bce).detach()}
