"""Drafting a round from the target's features: one round of a DSpark draft (:mod:`.round`), drawing
the block's tokens left to right with the sequential head (:mod:`.block`, whose :func:`.block.draw_token`
every strategy draws through), and one EAGLE-3 round: cache crop, extend, test-time-training chain
(:mod:`.eagle3_round`). The candidate generators run rounds through :func:`.round.draft_round` and
:func:`.eagle3_round.eagle3_round`; the cost profiler times :func:`.round.draft_round`. Guesses that need no
draft at all, the tokens that followed an earlier occurrence of the sequence's last tokens, come from
:func:`.ngram_lookup.ngram_continuation` (the hardware-aware policies' lookup rounds)."""
