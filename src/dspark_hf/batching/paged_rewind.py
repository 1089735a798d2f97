"""Rewinding one request in transformers' paged cache after a verification forward.

The verification forward wrote keys and values for ``[last, d_1 .. d_L]`` at positions
``p .. p + L``; with ``a`` tokens accepted, positions ``p .. p + a`` are the request's and the rest
are not. :func:`rewind_request` sets the request's length to ``p + a + 1`` (the next forward writes
from there, over the rejected positions) and gives every page wholly past that length back to the
pool. A sliding-window group's ring (:mod:`.sliding_ring`, a draft block longer than the window) has
pages past the kept length only while the request is shorter than the ring, and those hold only
rejected positions; once the ring is full nothing is released (the rejected slots are overwritten
next). Block sharing is off in a speculative batch, so no page is shared or hashed.
"""

from __future__ import annotations


def rewind_request(cache, state, keep: int) -> int:
    """Keep the first ``keep`` positions of ``state``'s cache; return the number of pages released."""
    state.position_offset = keep
    released = 0
    for allocator in cache.cache_allocators.values():
        table = allocator.block_table.get(state.request_id)
        if table is None:
            continue
        needed = -(-keep // allocator.tokens_per_page)
        extra = table[needed:]
        del table[needed:]
        freed = [block for block in extra if allocator.ledger.release(block, True)]
        allocator.pool.free_blocks(allocator.index, freed)
        released += len(extra)
    return released


def allocated_pages(cache) -> int:
    """Pages held by requests across all allocators (what a finished request must give back)."""
    return sum(len(table) for allocator in cache.cache_allocators.values() for table in allocator.block_table.values())
