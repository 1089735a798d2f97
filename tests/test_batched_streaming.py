"""The streaming manager with a DSpark draft: ``init_continuous_batching(..., assistant_model=draft)``,
requests added while others run, each request's tokens equal to plain batch-1 greedy ``generate``;
finished requests give back their pages and their draft state (memory flat over 200 requests).

Mutations run once each (the named test failed, then the change was reverted):

- ``paged_rewind.rewind_request``: release no page (``del table[needed:]`` and the release removed,
  only ``position_offset`` set): ``test_rejected_positions_release_their_pages`` fails;
- ``processor.update_batch``: finished requests keep their draft state (the ``spec.forget`` call
  removed): ``test_two_hundred_requests_leave_memory_flat`` fails.
"""

from __future__ import annotations

import time

import pytest

from batched_support import collect, fixture_draft, force_partly_right, greedy_config, plain_greedy, prompts_of, rounds, small_cache
from conftest import tiny_qwen3_target
from dspark_hf.batching.manager import SpeculativeBatchingManager
from dspark_hf.batching.paged_rewind import allocated_pages

NEW = 20


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3_target()


def test_requests_join_mid_run(target, monkeypatch):
    """Two requests start; three more join once the first tokens are out; a sixth with its own
    max_new_tokens joins later still."""
    draft = fixture_draft()
    prompts = prompts_of([6, 14, 9, 22, 5, 17], seed=21)
    plain = plain_greedy(target, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    manager = target.init_continuous_batching(generation_config=greedy_config(NEW), continuous_batching_config=small_cache(), assistant_model=draft)
    assert isinstance(manager, SpeculativeBatchingManager)
    manager.start()
    try:
        first = [manager.add_request(p, streaming=True) for p in prompts[:2]]
        while not draft.last_batch_telemetry.steps or len(draft.last_batch_telemetry.steps) < 3:
            time.sleep(0.01)
        later = [manager.add_request(p) for p in prompts[2:5]]
        last = manager.add_request(prompts[5], max_new_tokens=5)
        out = collect(manager, first + later + [last])
    finally:
        manager.stop(block=True)
    assert out == plain[:5] + [plain[5][:5]]
    steps = draft.last_batch_telemetry.steps
    assert any(s.decoding > 0 and s.prefill_tokens > 0 for s in steps), "no step verified and prefilled together"
    assert any(s.accepted > 0 for s in rounds(draft)) and any(s.accepted < s.verified for s in rounds(draft))


def test_rejected_positions_release_their_pages(target, monkeypatch):
    """With pages of 4 tokens and whole blocks of 7 verified, a rejection leaves pages wholly past
    the accepted length; they go back to the pool in the same step."""
    draft = fixture_draft()
    prompts = prompts_of([6], seed=23)
    manager = target.init_continuous_batching(generation_config=greedy_config(NEW), continuous_batching_config=small_cache(page_size=4), assistant_model=draft)
    released = []
    from dspark_hf.batching import processor as processor_module

    real = processor_module.rewind_request

    def spy(cache, state, keep):
        before = allocated_pages(cache)
        count = real(cache, state, keep)
        released.append((count, before - allocated_pages(cache), len(cache.cache_allocators["full_attention"].block_table[state.request_id]), keep))
        return count

    monkeypatch.setattr(processor_module, "rewind_request", spy)
    manager.start()
    try:
        out = collect(manager, [manager.add_request(prompts[0])])
    finally:
        manager.stop(block=True)
    assert out == plain_greedy(target, prompts, NEW)
    assert any(count > 0 for count, *_ in released), "no page was ever released"
    for count, freed, held, keep in released:
        assert freed == count and held == -(-keep // 4)


def test_two_hundred_requests_leave_memory_flat(target):
    """200 short requests in a row: after each, the paged cache holds no page of it, the pool's free
    pages are back to their starting count, and no per-request draft state is left."""
    draft = fixture_draft()
    manager = target.init_continuous_batching(generation_config=greedy_config(3), continuous_batching_config=small_cache(), assistant_model=draft)
    manager.start()
    samples = []
    try:
        for i, prompt in enumerate(prompts_of([4 + i % 9 for i in range(200)], seed=25)):
            collect(manager, [manager.add_request(prompt)])
            processor = manager.batch_processor
            cache = processor.cache
            free = sum(cache.pool.count_free_blocks(a.index) for a in cache.cache_allocators.values()) + cache.pool.num_free_sectors
            samples.append((allocated_pages(cache), free, len(manager.speculation.requests), len(processor.scheduler.active_requests)))
    finally:
        manager.stop(block=True)
    assert {s[0] for s in samples} == {0}, "pages left allocated"
    assert {s[2] for s in samples} == {0} and {s[3] for s in samples} == {0}, "request state left behind"
    assert len({s[1] for s in samples[10:]}) == 1, f"free pages drift: {sorted({s[1] for s in samples})}"
    assert len(draft.last_batch_telemetry.requests) == 200
