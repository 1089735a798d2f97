"""Drawing a drafted block left to right from the draft's corrected, processed distributions.

Slot ``k``'s logits are the backbone's base logits plus the sequential head's bias for the token
drawn in slot ``k - 1`` (the anchor for slot 0), spread over the target's vocabulary when the draft has a
reduced one (``-inf`` outside it: probability 0), then the target's logits processors (temperature,
top-k, top-p, repetition penalty, ...) applied to the sequence so far. The token is the argmax
(greedy) or a sample of ``softmax`` of those processed logits, and exactly those logits are reported,
so the verifier's ``min(1, p/q)`` uses the true ``q`` and speculative sampling stays lossless.

A draft with a reduced vocabulary whose rows nothing else reads (no logits processor) draws in that
vocabulary: the argmax (or the sample) over its K logits, mapped to the target id. Its ids are in
ascending order, so the argmax is the one over the spread-out logits, ties included, and a sample has
the same distribution (zero mass outside). The block keeps those K logits and spreads them over the
target's vocabulary only when :attr:`DraftBlock.logits` is read (sampling verification), so greedy
drafting never writes ``R x gamma`` rows of the target's vocabulary (at 8 requests on this project's CPU
the draw went from 6.6 to 2.3 ms of the drafting call: docs/measurements/2026-12-05b/draft_time_split_8.log).

:func:`draw_block` draws one block; :func:`draw_blocks` draws the blocks of several requests of one
batched draft forward, all requests at once per slot when no logits processor reads the sequences
(greedy, or sampling at the raw distribution), else request by request.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import LogitsProcessorList

from dspark_hf.models.dspark.draft_vocab import spread_to_vocabulary



def draw_token(
    logits: torch.Tensor, sequence: torch.LongTensor, logits_processor: LogitsProcessorList | None, do_sample: bool
) -> tuple[torch.LongTensor, torch.Tensor]:
    """One drafted token after ``sequence`` ``[1, n]`` from the draft's ``logits`` ``[1, V]``.

    The target's logits processors are applied to ``sequence`` and the float32 ``logits``; the token is
    the argmax (greedy) or a sample of ``softmax`` of the result. Returns ``(token [1], processed
    logits [1, V])``: the distribution the token was drawn from, the one to report to the verifier.
    Shared by every drafting strategy (DSpark blocks, EAGLE-3 chains)."""
    logits = logits.float()
    if logits_processor:
        logits = logits_processor(sequence, logits)
    if do_sample:
        token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
    else:
        token = logits.argmax(dim=-1)
    return token, logits


class DraftBlock:
    """``tokens`` ``[1, gamma]``; :attr:`logits` ``[1, gamma, V]`` float32 (V: the target's vocabulary), the processed logits each token
    was drawn from; ``confidences`` ``[gamma]`` survival probabilities ``c_k`` (``None`` without a
    confidence head).

    Built with ``vocab_ids`` (``[K]`` target ids, ascending) and ``vocab_size`` (V), ``logits`` are given
    over those K ids only (``[1, gamma, K]``) and spread over V, ``-inf`` elsewhere, on first read."""

    __slots__ = ("tokens", "confidences", "_logits", "_vocab_ids", "_vocab_size")

    def __init__(self, tokens: torch.LongTensor, logits: torch.Tensor, confidences: torch.Tensor | None,
                 vocab_ids: torch.Tensor | None = None, vocab_size: int | None = None) -> None:
        if vocab_ids is not None and vocab_size is None:
            raise ValueError("DraftBlock: vocab_ids needs vocab_size (the target's vocabulary size).")
        self.tokens = tokens
        self.confidences = confidences
        self._logits = logits
        self._vocab_ids = vocab_ids
        self._vocab_size = vocab_size

    @property
    def logits(self) -> torch.Tensor:
        """``[1, gamma, V]`` float32 over the target's vocabulary (spread out of the draft's on first read)."""
        if self._vocab_ids is not None:
            self._logits = spread_to_vocabulary(self._logits, self._vocab_ids, self._vocab_size)
            self._vocab_ids = None
        return self._logits

    def __repr__(self) -> str:
        return f"DraftBlock(tokens={self.tokens.tolist()}, confidences={self.confidences})"


def anchor_ids(prefixes: list[torch.LongTensor], device) -> torch.LongTensor:
    """``[R]``: each prefix's last token (the request's anchor) on ``device``; read on the host and moved in
    one copy when the prefixes live there, else gathered on their device."""
    if all(p.device.type == "cpu" for p in prefixes):
        return torch.tensor([int(p[0, -1]) for p in prefixes], dtype=torch.long).to(device)
    return torch.stack([p[0, -1] for p in prefixes]).to(device)


def reduced_vocabulary(draft) -> torch.Tensor | None:
    """The draft's reduced vocabulary (``draft_vocab_ids``, target ids) when it may be drawn in directly:
    ids in ascending order, so that an argmax over it breaks ties as one over the target's vocabulary
    would; ``None`` for a full-vocabulary draft (or ids out of order)."""
    ids = getattr(draft, "draft_vocab_ids", None)
    if ids is None or (ids.numel() > 1 and not bool((ids[1:] > ids[:-1]).all())):
        return None
    return ids


def _draw_rows(draft, hidden, base_logits, anchors, sequence, logits_processor, do_sample):
    """Draw ``gamma`` slots for every row of ``hidden [R, gamma, H]`` / ``base_logits [R, gamma, V']`` (V': the
    draft's vocabulary) after ``anchors [R]``, left to right. ``sequence`` ``[R, n]`` (extended with each drawn
    slot) is what the logits processors read; ``None`` only without processors. Returns ``(tokens [R, gamma],
    processed logits [R, gamma, V or K], confidences [R, gamma] or None, vocab_ids)``: the logits are over the
    reduced vocabulary ``vocab_ids`` (ascending target ids) when the rows were drawn there (a reduced draft,
    no processors), else over the target's (``vocab_ids`` ``None``)."""
    head = draft.markov_head
    expand = getattr(draft, "expand_to_target_vocab", None)
    vocab_ids = reduced_vocabulary(draft) if expand is not None and not logits_processor else None
    if vocab_ids is not None:
        vocab_ids = vocab_ids.to(hidden.device)
    prev, state = anchors, None
    tokens, logits = [], []
    for k in range(base_logits.shape[1]):
        step_logits = base_logits[:, k].float()
        if head is not None:
            bias, state = head.step(prev, hidden[:, k], state)
            step_logits = step_logits + bias.float()
        if vocab_ids is not None:  # drawn among the K ids (no processor reads the target's vocabulary), then mapped
            token, step_logits = draw_token(step_logits, None, None, do_sample)
            token = vocab_ids[token]
        else:
            if expand is not None:
                step_logits = expand(step_logits)
            token, step_logits = draw_token(step_logits, sequence, logits_processor, do_sample)
        tokens.append(token)
        logits.append(step_logits)
        if sequence is not None:
            sequence = torch.cat([sequence, token[:, None].to(sequence.device)], dim=-1)
        prev = token
    tokens_t = torch.stack(tokens, dim=1)
    conf_logits = draft.confidence_logits(hidden, torch.cat([anchors[:, None], tokens_t[:, :-1]], dim=1))
    return tokens_t, torch.stack(logits, dim=1), None if conf_logits is None else torch.sigmoid(conf_logits), vocab_ids


@torch.no_grad()
def draw_block(
    draft,
    hidden: torch.Tensor,
    base_logits: torch.Tensor,
    prefix_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList | None,
    do_sample: bool,
) -> DraftBlock:
    """Draw ``gamma`` tokens after ``prefix_ids`` (whose last token is the anchor) from the block's
    backbone output ``hidden [1, gamma, H]`` and ``base_logits [1, gamma, V]``."""
    tokens, logits, confidences, vocab_ids = _draw_rows(draft, hidden, base_logits, prefix_ids[:, -1], prefix_ids, logits_processor, do_sample)
    return DraftBlock(tokens=tokens, logits=logits, confidences=None if confidences is None else confidences[0],
                      vocab_ids=vocab_ids, vocab_size=draft.config.vocab_size)


@torch.no_grad()
def draw_blocks(
    draft,
    hidden: torch.Tensor,
    base_logits: torch.Tensor,
    prefixes: list[torch.LongTensor],
    logits_processor: LogitsProcessorList | None,
    do_sample: bool,
) -> list[DraftBlock]:
    """Draw one block per request from a batched backbone output: ``hidden [R, gamma, H]``,
    ``base_logits [R, gamma, V]``, ``prefixes[r]`` ``[1, n_r]`` (its last token is request ``r``'s anchor;
    on any device). Same contract, per request, as :func:`draw_block`.

    Without logits processors (nothing reads the ragged sequences) every slot is drawn for all ``R``
    requests in one step of the sequential head, one argmax (or one row-wise multinomial) and one
    confidence-head call for the whole batch, instead of ``R x gamma`` per-request steps (on a GPU each
    is a handful of kernel launches; at 64 requests that dominated a drafted step). The rows are the same
    computations as :func:`draw_block`'s, batched, so tokens and logits equal the per-request draw up to
    the floating-point reduction order of a batched matrix product; each sampled row is drawn from its
    own reported distribution, so sampling stays lossless. With processors: :func:`draw_block` per
    request on its own sequence."""
    requests = hidden.shape[0]
    device = hidden.device
    if logits_processor:
        return [draw_block(draft, hidden[r : r + 1], base_logits[r : r + 1], prefixes[r].to(device), logits_processor, do_sample)
                for r in range(requests)]
    tokens, logits, confidences, vocab_ids = _draw_rows(draft, hidden, base_logits, anchor_ids(prefixes, device), None, None, do_sample)
    vocab = draft.config.vocab_size
    return [
        DraftBlock(tokens=tokens[r : r + 1], logits=logits[r : r + 1], confidences=None if confidences is None else confidences[r],
                   vocab_ids=vocab_ids, vocab_size=vocab)
        for r in range(requests)
    ]
