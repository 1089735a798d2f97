"""Sliding-window layers in a speculative continuous batch: a ring a draft block longer than the window.

transformers' paged cache keeps a sliding-window layer group of a request in a ring buffer of exactly
``sliding_window`` positions (position ``p`` in slot ``p % sliding_window``). A verification forward
writes keys for ``[last, d_1 .. d_L]`` at positions ``p .. p + L``; in a ring of the window those
writes land on the slots of positions ``p - W .. p + L - W``, and when drafted tokens are rejected the
request continues from ``p + a + 1`` needing keys back to ``p + a + 2 - W``, some of which were just
overwritten. Rewinding cannot bring them back.

:func:`widen_sliding_rings` turns each sliding-window allocator of a speculative batch's cache into a
:class:`SpeculativeSlidingRing` whose ring holds ``sliding_window + block_size`` positions (position
``p`` in slot ``p % ring``): a verification of up to ``block_size`` drafted tokens then overwrites only
positions up to ``p + L - ring <= p - W``, which no later query reads (a query at position
``q >= p + 1`` reads back to ``q - W + 1``). Reads are unchanged: the last ``sliding_window - 1`` cached
positions and the new ones, so the keys, their layout and transformers' sliding-window attention mask
are exactly those of plain continuous batching. A rewound request keeps its ring; pages wholly past
its kept length (only while it is shorter than the ring) go back to the pool
(:func:`~dspark_hf.batching.paged_rewind.rewind_request`). Each request holds at most
``ceil((sliding_window + block_size) / page_size)`` pages per sliding group instead of
``ceil(sliding_window / page_size)``.

The allocator transformers built is given this class in place (as the batch processor is), before any
request holds a page; everything else about the cache (pool, sectors, block sharing off) is
transformers' own.
"""

from __future__ import annotations

from transformers.generation.continuous_batching.cache_allocators.sliding_attention import SlidingAttentionCacheAllocator


class SpeculativeSlidingRing(SlidingAttentionCacheAllocator):
    """transformers' sliding-window allocator with a ring of ``ring`` positions (``>= sliding_window``);
    see the module docstring. Made by :func:`widen_sliding_rings`."""

    ring: int

    def _compute_blocks_needed(self, allocated_blocks: int, past_length: int, query_length: int) -> int:
        total_length = min(past_length + query_length, self.ring)
        total_blocks = (total_length + self.tokens_per_page - 1) // self.tokens_per_page
        return max(0, total_blocks - allocated_blocks)

    def _slots(self, request_id: str, first_position: int, length: int) -> list[int]:
        """Physical indices of the absolute positions ``first_position .. first_position + length - 1``."""
        block_table = self.block_table.get(request_id)
        if block_table is None:
            raise ValueError(f"No block table found for request {request_id}")
        indices = []
        for position in range(first_position, first_position + length):
            page, offset = divmod(position % self.ring, self.tokens_per_page)
            indices.append(block_table[page] * self.block_physical_stride + offset)
        return indices

    def get_read_indices(self, request_id: str, past_length: int, query_length: int) -> list[int]:
        """The last ``sliding_window - 1`` cached positions (all of them while fewer), then a sentinel per
        new token (transformers' layout)."""
        cached = min(past_length, self.sliding_window - 1)
        return self._slots(request_id, past_length - cached, cached) + [self.sentinel_index] * query_length

    def get_write_indices(self, request_id: str, past_length: int, query_length: int) -> list[int]:
        """The slots of the new positions; of a query longer than the ring only the last ``ring`` are
        stored, the earlier ones go to the write trash."""
        stored = min(query_length, self.ring)
        skipped = query_length - stored
        return [self.write_trash_index] * skipped + self._slots(request_id, past_length + skipped, stored)


def widen_sliding_rings(cache, block_size: int) -> int:
    """Give every sliding-window allocator of ``cache`` (transformers' ``PagedAttentionCache``) a ring of
    ``sliding_window + block_size`` positions; returns how many allocators it changed. Idempotent; to
    be called before any request is allocated pages."""
    changed = 0
    for allocator in cache.cache_allocators.values():
        if isinstance(allocator, SlidingAttentionCacheAllocator):
            if allocator.block_table:
                raise RuntimeError("widen_sliding_rings: the cache already holds requests")
            ring = allocator.sliding_window + int(block_size)
            if not isinstance(allocator, SpeculativeSlidingRing) or allocator.ring != ring:
                allocator.__class__ = SpeculativeSlidingRing
                allocator.ring = ring
                changed += 1
    return changed
