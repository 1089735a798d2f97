"""Per-request drafting state of a speculative batch.

One :class:`SpeculativeRequest` per live request, created when the request first appears in a packed
forward and dropped when it finishes or is cancelled, which frees its draft context cache.

Contract (the bookkeeping of :func:`dspark_hf.drafting.round.draft_round`): after every packed forward
the request's ``pending_features`` hold the target features of exactly the positions
``context.committed .. n - 2`` of its sequence of ``n`` tokens: a prefill chunk adds all its rows, a
verification of ``[last, d_1 .. d_L]`` with ``a`` accepted tokens adds its first ``a + 1`` rows (the
last token and the accepted ones; the rows of rejected tokens are never kept). :meth:`take_features`
hands them to the next drafting round and empties the list.
"""

from __future__ import annotations

import torch

from dspark_hf.drafting.block import DraftBlock
from dspark_hf.batching.batched_drafting import new_context
from dspark_hf.telemetry import GenerationTelemetry

# A request the hardware-aware policy keeps from drafting still drafts at least once in
# ``explore_every`` steps, so that the confidences the decision rests on stay fresh. The interval
# starts at EXPLORE_EVERY, doubles (up to EXPLORE_EVERY_MAX) each time such a forced draft was the only
# reason to draft, and returns to EXPLORE_EVERY when the request's drafting is chosen on its merits.
EXPLORE_EVERY = 8
EXPLORE_EVERY_MAX = 64


class SpeculativeRequest:
    """Drafting state of one request: the draft's context cache, the target features it has not
    consumed yet, the drafted block (or the prompt-lookup guess) awaiting verification with the length
    chosen for it, and the request's telemetry."""

    def __init__(self, draft) -> None:
        self.context = new_context(draft)
        self.pending_features: list[torch.Tensor] = []
        self.block: DraftBlock | None = None
        self.block_tokens: list[int] = []  # the block's tokens, on the host
        self.block_confidences: torch.Tensor | None = None  # the block's confidences, on the host
        self.verify_length = 0
        self.verify_tokens: list[int] = []  # the block's (or the guess's) first verify_length tokens, on the host
        self.guess_ngram = 0  # > 0: this step verifies a prompt-lookup guess (matched on so many tokens), not a block
        self.draft_seconds = 0.0
        self.last_confidences = None  # of the previous block, for deciding whether to draft (planning.requests_to_draft)
        self.steps_since_draft = 0  # consecutive steps this request took a plain token instead of drafting
        self.explore_every = EXPLORE_EVERY  # at most this many steps between two drafts (see EXPLORE_EVERY)
        self.telemetry = GenerationTelemetry()

    @property
    def verifying(self) -> bool:
        """Whether the request's next rows are ``[last, d_1 .. d_L]``: a drafted block or a prompt-lookup guess."""
        return self.block is not None or self.guess_ngram > 0

    def set_guess(self, tokens: list[int], ngram: int) -> None:
        """Verify ``tokens`` of a prompt-lookup guess matched on an ``ngram``-token suffix this step (an empty
        list or ``ngram == 0``: none)."""
        self.guess_ngram = int(ngram) if tokens else 0
        self.verify_tokens = list(tokens) if self.guess_ngram else []
        self.verify_length = len(self.verify_tokens)

    def must_draft(self) -> bool:
        """Whether this step ends the request's longest allowed run of steps without drafting."""
        return self.steps_since_draft + 1 >= self.explore_every

    def drafting_decided(self, drafts: bool, on_merit: bool) -> None:
        """Record this step's drafting choice: ``on_merit`` when the request would draft without being
        forced. A forced draft doubles the exploration interval; a draft on merit resets it."""
        if not drafts:
            self.steps_since_draft += 1
            return
        self.steps_since_draft = 0
        self.explore_every = EXPLORE_EVERY if on_merit else min(2 * self.explore_every, EXPLORE_EVERY_MAX)

    def set_block(self, block: DraftBlock | None, tokens: list[int] | None = None, confidences: torch.Tensor | None = None) -> None:
        """The drafted block awaiting verification (``None``: none) with host copies of its tokens and
        confidences (the processor transfers those of a whole step at once)."""
        self.block = block
        self.block_tokens = list(tokens) if tokens is not None else []
        self.block_confidences = confidences

    def restart(self, draft) -> None:
        """Forget the drafting state (not the telemetry): the request is prefilled again from position 0
        (transformers re-prefills a request it offloaded under cache pressure)."""
        self.context = new_context(draft)
        self.pending_features = []
        self.set_block(None)
        self.set_guess([], 0)

    @staticmethod
    def sequence(state, device) -> torch.LongTensor:
        """The request's prompt and generated tokens, ``[1, n]``."""
        return torch.tensor([list(state.initial_tokens) + list(state.generated_tokens)], dtype=torch.long, device=device)

    def add_features(self, rows: torch.Tensor) -> None:
        """Keep ``rows`` ``[S, F]``: features of the next ``S`` committed positions."""
        if rows.shape[0]:
            self.pending_features.append(rows)

    def take_features(self, width: int, device, dtype) -> torch.Tensor:
        """``[1, S, F]``: every pending row, in order; the list is emptied."""
        rows = torch.cat(self.pending_features, dim=0) if self.pending_features else torch.empty(0, width, device=device, dtype=dtype)
        self.pending_features = []
        return rows[None]
