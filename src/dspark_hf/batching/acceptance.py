"""Per-request verification on the rows of a packed target forward.

A request that verifies ``L`` drafted tokens ``d_1 .. d_L`` after its sequence of ``n`` tokens owns
``L + 1`` logits rows of the packed forward: row ``k`` predicts the token after the sequence and
``d_1 .. d_k``. The target's logits processors are applied to each row with exactly that prefix
(what ``generate`` applies in its own step), then:

- greedy: the drafted tokens are accepted while they equal the row's argmax; the first argmax that
  differs (or the one after ``d_L``) is the target's own token;
- sampling: transformers' speculative sampling (accept ``d_k`` with probability ``min(1, p/q)`` against
  the distribution ``q`` the draft reported, draw the first rejected slot from the normalised
  residual ``max(0, p - q)``, or the bonus token from ``p``), so every token is distributed as the
  target's.

``L == 0`` (nothing verified, or the row that ends a prefill) draws one token from the single row.

A prompt-lookup guess (``draft_logits`` ``None``: a proposal fixed by the committed tokens, not drawn from a
distribution) is verified the way transformers verifies candidates without logits: each row draws its
token from the target, and the guessed tokens are kept while they equal the draws; the first draw that
differs (or the one after ``d_L``) is the target's own token. Every kept token was drawn from the target
given the tokens before it, so the output is distributed as plain sampling's.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import LogitsProcessorList
from transformers.generation.utils import _speculative_sampling


def processed_rows(logits: torch.Tensor, candidate: torch.LongTensor, n: int, logits_processor: LogitsProcessorList | None) -> torch.Tensor:
    """``logits`` ``[L + 1, V]`` float32 with row ``k`` processed after ``candidate[:, : n + k]``
    (``candidate`` ``[1, n + L]``: the sequence then the drafted tokens)."""
    if not logits_processor:
        return logits
    return torch.cat([logits_processor(candidate[:, : n + k], logits[k : k + 1]) for k in range(logits.shape[0])], dim=0)


def greedy_tokens(picks: list[int], drafted: list[int]) -> tuple[list[int], int]:
    """Acceptance on host lists: ``picks`` the target's token of each of a request's ``L + 1`` rows (the
    argmax for greedy decoding without logits processors; a draw per row for a guess under sampling),
    ``drafted`` its ``L`` drafted (or guessed) tokens: those kept while they equal the picks, then the first
    pick that differs. The same ``(new tokens, accepted)`` as :func:`verify_request` for greedy decoding
    without processors."""
    accepted = 0
    while accepted < len(drafted) and drafted[accepted] == picks[accepted]:
        accepted += 1
    return drafted[:accepted] + [picks[accepted]], accepted


@torch.no_grad()
def verify_request(
    logits: torch.Tensor,
    sequence: torch.LongTensor,
    drafted: torch.LongTensor,
    draft_logits: torch.Tensor | None,
    logits_processor: LogitsProcessorList | None,
    do_sample: bool,
) -> tuple[list[int], int]:
    """Tokens a request adds from its ``L + 1`` rows ``logits`` ``[L + 1, V]`` and its ``L`` drafted
    tokens ``drafted`` ``[1, L]`` (with the ``[1, L, V]`` processed draft logits they were drawn from,
    needed for sampling; ``None`` for a prompt-lookup guess, see the module docstring). Returns ``(new tokens, accepted)``: the accepted drafted tokens and then
    the target's own token, ``accepted + 1`` tokens in all."""
    length = drafted.shape[1]
    n = sequence.shape[1]
    candidate = torch.cat([sequence, drafted.to(sequence.device)], dim=1)
    rows = processed_rows(logits.float(), candidate, n, logits_processor)
    if not do_sample:
        selected = rows.argmax(dim=-1)
        matches = (drafted[0].to(selected.device) == selected[:length]).long()
        accepted = int(matches.cumprod(dim=0).sum()) if length else 0
        return drafted[0, :accepted].tolist() + [int(selected[accepted])], accepted
    if length == 0:
        token = torch.multinomial(torch.softmax(rows[0], dim=-1), num_samples=1)
        return [int(token)], 0
    if draft_logits is None:  # a guess: draw every row from the target, keep the guessed tokens drawn
        draws = torch.multinomial(torch.softmax(rows, dim=-1), num_samples=1)[:, 0].tolist()
        return greedy_tokens(draws, drafted[0].tolist())
    tokens, accepted = _speculative_sampling(candidate, draft_logits[:, :length].to(rows.device), length, rows[None])
    return tokens[0].tolist(), int(accepted)
