"""Drafting a block: one round of a DSpark draft given the target's features (:mod:`.round`), and
drawing the block's tokens left to right with the sequential head (:mod:`.block`). The candidate
generator and the cost profiler both run rounds through :func:`.round.draft_round`."""
