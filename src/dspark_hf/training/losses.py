"""The training losses (DeepSpec's recipes): DSpark / DFlash (:func:`dspark_losses`) and EAGLE-3
(:func:`eagle3_losses`).

DSpark, per slot weighted by ``w_k = exp(-k / 4)`` and cut at
the first invalid slot:

- ``0.1 * CE(corrected logits, true next token)``;
- ``0.9 * || softmax(corrected) - softmax(target) ||_1``;
- ``1.0 * BCE(sigmoid(confidence), 1 - TV(draft, target))`` with the target ``1 - TV`` detached
  (``TV = L1 / 2``); only when the draft has a confidence head.

"Corrected" logits are the base logits plus the sequential head's bias for the true previous token
(teacher forcing); the DFlash variant has no head, so they are the base logits. Each term is the
weighted mean over valid slots (sum of ``w_k`` over valid slots as the denominator).

A draft with a reduced vocabulary (``draft_vocab_ids``, K target ids) has K logits: its distribution is 0
outside them, so the L1 term is ``sum_K |q - p_K| + (1 - sum_K p)`` (the target's mass outside, a constant
the draft cannot lower but that the survival target ``1 - TV`` must count), and the CE term skips labels
outside the vocabulary (they cannot be drafted).

EAGLE-3 (DeepSpec's ``compute_eagle3_loss``): per chain step ``k``, the soft cross-entropy
``-sum_v p_target(v) log q_draft(v)`` against the target's full distribution (not the hard label),
summed over the rows in DeepSpec's position mask and divided by the sequence length ``S`` (all rows,
masked or not: its ``local_mean`` at one sequence per forward), weighted ``step_loss_decay ** k``
and summed over the ``ttt_length`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CE_WEIGHT, L1_WEIGHT, CONFIDENCE_WEIGHT = 0.1, 0.9, 1.0


def slot_weights(gamma: int, decay: float = 4.0) -> torch.Tensor:
    """``exp(-k / decay)`` for ``k = 0 .. gamma - 1``."""
    return torch.exp(-torch.arange(gamma, dtype=torch.float32) / decay)


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    l1: torch.Tensor
    confidence: torch.Tensor | None
    accuracy: torch.Tensor  # greedy top-1 agreement with the label over valid slots (a metric)


def dspark_losses(
    corrected_logits: torch.Tensor,
    target_logits: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    confidence_logits: torch.Tensor | None,
    decay: float = 4.0,
    draft_vocab_ids: torch.Tensor | None = None,
) -> LossParts:
    """Losses of ``[N, gamma, K]`` draft (corrected) and ``[N, gamma, V]`` target logits (K = V without
    ``draft_vocab_ids``), ``labels`` (target ids) / ``valid`` ``[N, gamma]`` and optional pre-sigmoid
    ``confidence_logits`` ``[N, gamma]``."""
    gamma = labels.shape[1]
    weights = slot_weights(gamma, decay).to(corrected_logits.device)[None, :] * valid.float()
    denom = weights.sum().clamp_min(1e-8)
    draft_logp = F.log_softmax(corrected_logits.float(), dim=-1)
    target_p = F.softmax(target_logits.float(), dim=-1)
    outside = None
    draft_labels, ce_weights = labels.clamp_min(0), weights
    if draft_vocab_ids is not None:
        ids = draft_vocab_ids.to(target_p.device)
        target_p = target_p[..., ids]
        outside = (1.0 - target_p.sum(-1)).clamp_min(0.0)
        position = torch.full((target_logits.shape[-1],), -1, dtype=torch.long, device=labels.device)
        position[ids.to(labels.device)] = torch.arange(ids.numel(), device=labels.device)
        draft_labels = position[labels.clamp_min(0)]
        ce_weights = weights * (draft_labels >= 0).float()
        draft_labels = draft_labels.clamp_min(0)
    ce = F.nll_loss(draft_logp.flatten(0, 1), draft_labels.flatten(), reduction="none").view_as(weights)
    ce = (ce * ce_weights).sum() / ce_weights.sum().clamp_min(1e-8)
    l1_per_slot = (draft_logp.exp() - target_p).abs().sum(-1)
    if outside is not None:
        l1_per_slot = l1_per_slot + outside
    l1 = (l1_per_slot * weights).sum() / denom
    total = CE_WEIGHT * ce + L1_WEIGHT * l1
    confidence = None
    if confidence_logits is not None:
        survive = (1.0 - 0.5 * l1_per_slot).detach().clamp(0.0, 1.0)
        bce = F.binary_cross_entropy_with_logits(confidence_logits.float(), survive, reduction="none")
        confidence = (bce * weights).sum() / denom
        total = total + CONFIDENCE_WEIGHT * confidence
    with torch.no_grad():
        drafted = corrected_logits.argmax(-1)
        if draft_vocab_ids is not None:
            drafted = draft_vocab_ids.to(drafted.device)[drafted]
        hits = (drafted == labels).float() * valid.float()
        accuracy = hits.sum() / valid.float().sum().clamp_min(1.0)
    return LossParts(total=total, ce=ce, l1=l1, confidence=confidence, accuracy=accuracy)


def eagle3_losses(
    draft_logits: torch.Tensor,
    target_logits: torch.Tensor,
    steps: torch.Tensor,
    labels: torch.Tensor,
    row_weight: float,
    step_loss_decay: float,
) -> LossParts:
    """The EAGLE-3 loss of ``P`` (row, step) pairs in the position mask: ``draft_logits`` /
    ``target_logits`` ``[P, V]``, their chain ``steps`` ``[P]`` and true next tokens ``labels`` ``[P]``
    (``-100`` past the end; for the accuracy metric only). ``total = sum_p decay**step_p * row_weight *
    softCE_p`` (``row_weight``: ``1 / S`` for DeepSpec's loss). Also reported, detached: ``ce``, the mean
    soft cross-entropy per pair; ``l1``, the mean ``|| q - p ||_1``; ``accuracy``, greedy agreement with
    the label."""
    draft_logp = F.log_softmax(draft_logits.float(), dim=-1)
    target_p = F.softmax(target_logits.float(), dim=-1)
    soft_ce = -(target_p * draft_logp).sum(-1)
    weights = step_loss_decay ** steps.to(soft_ce.device, torch.float32) * row_weight
    total = (soft_ce * weights).sum()
    with torch.no_grad():
        count = max(1, soft_ce.numel())
        ce = soft_ce.sum() / count
        l1 = (draft_logp.exp() - target_p).abs().sum(-1).sum() / count
        has_label = labels >= 0
        hits = (draft_logits.argmax(-1) == labels) & has_label
        accuracy = hits.float().sum() / has_label.float().sum().clamp_min(1.0)
    return LossParts(total=total, ce=ce, l1=l1, confidence=None, accuracy=accuracy)


assert math.isclose(float(slot_weights(5)[4]), math.exp(-1.0), rel_tol=1e-6)
