"""Anchor sampling and block packing, the DeepSpec recipe.

For a sequence of ``S`` tokens with an assistant mask, an anchor is a position ``a`` where the token at
``a`` and the next token are both assistant tokens. Each sampled anchor becomes a block of ``gamma``
slots at positions ``a .. a + gamma - 1``: slot 0 holds the anchor token, the others the mask token, and
slot ``k`` predicts the token at ``a + k + 1`` (label ``-100`` where that token is past the end or not an
assistant token). All blocks are packed after the context rows (the target features of all ``S``
positions) with a block attention mask: a block's rows see the context rows at positions ``< a`` and the
``gamma`` rows of their own block, nothing else. This is exactly what one inference round sees (context
cache up to the anchor, then the block, no mask), so a packed forward gives each block the logits
inference would.

EAGLE-3 drafts train on chain rows instead (:func:`chain_rows`): the chain drafting from anchor ``a`` is
row ``a - 1``, so a run with sampled positions trains on the same anchors as a DSpark run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


def valid_anchors(assistant_mask: torch.Tensor) -> torch.Tensor:
    """Positions ``a`` with ``mask[a] == mask[a + 1] == 1``."""
    mask = assistant_mask.bool()
    return torch.nonzero(mask[:-1] & mask[1:]).flatten()


def sample_anchors(assistant_mask: torch.Tensor, num_anchors: int, generator: torch.Generator) -> torch.Tensor:
    """Up to ``num_anchors`` distinct valid anchors, uniformly at random, sorted."""
    candidates = valid_anchors(assistant_mask)
    if candidates.numel() > num_anchors:
        pick = torch.randperm(candidates.numel(), generator=generator)[:num_anchors]
        candidates = candidates[pick]
    return candidates.sort().values


@dataclass
class PackedBlocks:
    """One sequence's packed blocks (``N`` anchors, ``gamma`` slots each).

    ``block_ids`` / ``labels`` / ``prev_ids`` ``[N, gamma]``; ``positions`` ``[S + N * gamma]`` (context
    then block rows); ``attention_mask`` ``[N * gamma, S + N * gamma]`` bool (True = attend);
    ``target_positions`` ``[N, gamma]``: the sequence position whose target distribution slot ``k``
    imitates (``a + k``, clamped inside the sequence; only meaningful where the label is valid);
    ``valid`` ``[N, gamma]``: slots up to the first invalid one.
    """

    anchors: torch.Tensor
    block_ids: torch.Tensor
    labels: torch.Tensor
    prev_ids: torch.Tensor
    positions: torch.Tensor
    attention_mask: torch.Tensor
    target_positions: torch.Tensor
    valid: torch.Tensor


def pack_blocks(input_ids: torch.Tensor, assistant_mask: torch.Tensor, anchors: torch.Tensor, gamma: int, mask_token_id: int) -> PackedBlocks:
    """Build the packed blocks of ``anchors`` for the 1-D ``input_ids`` / ``assistant_mask``."""
    seq_len = input_ids.shape[0]
    n = anchors.shape[0]
    slots = torch.arange(gamma)
    slot_pos = anchors[:, None] + slots[None, :]  # position of slot k
    label_pos = slot_pos + 1
    inside = label_pos < seq_len
    safe = label_pos.clamp(max=seq_len - 1)
    labels = torch.where(inside & assistant_mask[safe].bool(), input_ids[safe], torch.full_like(safe, IGNORE))
    valid = torch.cumprod((labels != IGNORE).long(), dim=1).bool()
    labels = torch.where(valid, labels, torch.full_like(labels, IGNORE))
    block_ids = torch.full((n, gamma), mask_token_id, dtype=torch.long)
    block_ids[:, 0] = input_ids[anchors]
    # Teacher forcing: slot k's previous token is the true token at a + k (the anchor for k = 0).
    prev_ids = input_ids[slot_pos.clamp(max=seq_len - 1)]
    positions = torch.cat([torch.arange(seq_len), slot_pos.flatten()])
    rows = n * gamma
    row_anchor = anchors.repeat_interleave(gamma)
    context_visible = torch.arange(seq_len)[None, :] < row_anchor[:, None]
    row_block = torch.arange(n).repeat_interleave(gamma)
    own_block = row_block[:, None] == row_block[None, :]
    attention_mask = torch.cat([context_visible, own_block], dim=1)
    assert attention_mask.shape == (rows, seq_len + rows)
    return PackedBlocks(
        anchors=anchors,
        block_ids=block_ids,
        labels=labels,
        prev_ids=prev_ids,
        positions=positions,
        attention_mask=attention_mask,
        target_positions=slot_pos.clamp(max=seq_len - 1),
        valid=valid,
    )


@dataclass
class ChainRows:
    """One sequence's rows of an EAGLE-3 test-time-training chain (DeepSpec's recipe), ``R`` rows.

    Row ``i`` pairs the target feature of position ``i`` with the token of position ``i + 1``; its chain
    step ``k`` (``k = 0 .. T-1``) runs at RoPE position ``i + k`` on the token of position ``i + k + 1``
    (teacher forcing) and predicts the token of position ``i + k + 2``, imitating the target's
    distribution at position ``i + k + 1``. Inference drafting from anchor ``a`` is row ``a - 1``.

    ``input_ids`` ``[S]``; ``rows`` ``[R]`` (sorted); ``anchors`` ``[R]`` = ``rows + 1``;
    ``target_positions`` ``[R, T]`` (``i + k + 1``, clamped inside the sequence); ``mask`` ``[R, T]``:
    DeepSpec's position mask, the assistant mask at ``i + k`` with the sequence's last position off;
    ``labels`` ``[R, T]``: the token at ``i + k + 2`` (``-100`` past the end; a metric only);
    ``row_weight``: what each row's loss is multiplied by (DeepSpec: ``1 / S``; on sampled rows
    ``(candidates / sampled) / S``, so that the sum estimates the all-rows loss).
    """

    input_ids: torch.Tensor
    rows: torch.Tensor
    anchors: torch.Tensor
    target_positions: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    row_weight: float


def chain_rows(input_ids: torch.Tensor, assistant_mask: torch.Tensor, ttt_length: int, anchors: torch.Tensor | None = None) -> ChainRows:
    """The rows of the 1-D ``input_ids`` / ``assistant_mask`` an EAGLE-3 chain of ``ttt_length`` steps is
    trained on: every row with a position in the loss (``anchors=None``, DeepSpec's loss), or the rows
    ``a - 1`` of the sampled DSpark ``anchors`` (:func:`sample_anchors`: the same positions the DSpark
    and DFlash drafts train on), weighted to estimate the all-rows loss."""
    seq_len = input_ids.shape[0]
    steps = torch.arange(ttt_length)
    position_mask = assistant_mask.bool().clone()
    position_mask[seq_len - 1] = False  # the last position has no next token inside the sequence
    if anchors is None:
        rows = torch.arange(seq_len)
        at = (rows[:, None] + steps[None, :]).clamp(max=seq_len - 1)
        keep = (position_mask[at] & (rows[:, None] + steps[None, :] < seq_len)).any(dim=1)
        rows = rows[keep]
        scale = 1.0
    else:
        candidates = valid_anchors(assistant_mask).numel()
        rows = anchors[anchors >= 1] - 1
        scale = candidates / max(1, anchors.numel())
    shifted = rows[:, None] + steps[None, :]
    mask = position_mask[shifted.clamp(max=seq_len - 1)] & (shifted < seq_len)
    label_pos = shifted + 2
    labels = torch.where(label_pos < seq_len, input_ids[label_pos.clamp(max=seq_len - 1)], torch.full_like(label_pos, IGNORE))
    return ChainRows(
        input_ids=input_ids,
        rows=rows,
        anchors=rows + 1,
        target_positions=(shifted + 1).clamp(max=seq_len - 1),
        mask=mask,
        labels=labels,
        row_weight=scale / seq_len,
    )
