"""Prompt-lookup guesses: a continuation copied from earlier in the sequence, at no model cost.

:func:`ngram_continuation` finds the most recent earlier occurrence of the sequence's last ``n`` tokens
(the longest ``n`` from ``max_ngram`` down to ``min_ngram`` that occurs) and returns the tokens that
followed it there. Code, arithmetic and answers that quote their prompt repeat themselves, so such a
guess is often right; it costs a scan of the sequence (tens of microseconds at a few hundred tokens),
not a drafting round. The guess depends only on the tokens already committed, so verifying it keeps
greedy and sampled decoding lossless (a deterministic proposal, verified by drawing from the target).

transformers' ``PromptLookupCandidateGenerator`` takes the *first* occurrence and up to two tokens of
context; here the *most recent* one is taken (text near the end of a sequence predicts its next tokens
better), and the n-gram size found is returned with the guess, so that a policy can keep separate
acceptance estimates per size (:mod:`dspark_hf.verification.scheduling.lookup_rounds`).
"""

from __future__ import annotations

import torch


def ngram_continuation(ids: torch.Tensor, max_tokens: int, max_ngram: int = 4, min_ngram: int = 1) -> tuple[torch.Tensor, int]:
    """``(tokens, n)``: up to ``max_tokens`` tokens that followed the most recent earlier occurrence of
    the last ``n`` tokens of ``ids`` (1-D), for the largest ``n`` in ``[min_ngram, max_ngram]`` that
    occurs with at least one token after it; ``(empty, 0)`` when none does."""
    ids = ids.reshape(-1)
    length = ids.shape[0]
    empty = ids.new_empty(0)
    if max_tokens <= 0:
        return empty, 0
    for n in range(min(max_ngram, length - 1), min_ngram - 1, -1):
        # windows starting at 0 .. length - n - 1: each has at least one token after it (the suffix itself excluded)
        windows = ids[: length - 1].unfold(0, n, 1)
        hits = (windows == ids[length - n:]).all(dim=-1).nonzero()
        if hits.numel():
            start = int(hits[-1]) + n
            return ids[start: start + max_tokens], n
    return empty, 0
