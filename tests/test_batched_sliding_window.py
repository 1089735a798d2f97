"""Batched DSpark on targets with sliding-window layers (Gemma 3 / 4, Mistral-style, Qwen3 with
``use_sliding_window``): each request's tokens equal plain batch-1 greedy ``generate`` of its prompt
(float32) while sequences run well past the window, with drafted tokens rejected in the same packed
forwards; the rings of the sliding layers are a draft block longer than the window
(:mod:`dspark_hf.batching.sliding_ring`) and give their pages back.

Mutations run once each (the named test failed, then the change was reverted):

- ``sliding_ring.widen_sliding_rings``: ring of the window only (``ring = allocator.sliding_window``,
  transformers' own ring): ``test_gemma_sliding_window_every_batch_size`` fails for every batch size
  (rejected draft tokens overwrite keys still read), and so do ``test_qwen3_sliding_and_full_layers``,
  ``test_real_draft_unforced``, ``test_ring_pages_bounded_and_given_back`` and
  ``test_widening_is_idempotent_and_refuses_a_used_cache``;
- ``SpeculativeSlidingRing.get_read_indices``: read one cached position fewer
  (``cached = min(past_length, self.sliding_window - 2)``): ``test_ring_of_the_window_reads_and_writes_as_transformers``
  fails (and every generation test, the packed forward's shapes no longer agreeing);
- ``paged_rewind.rewind_request`` releasing nothing (``del table[needed:]`` and the release removed):
  ``test_ring_pages_bounded_and_given_back`` fails (a ring page past the kept length stays held).
"""

from __future__ import annotations

import pytest
import torch
from transformers.generation.continuous_batching.cache_allocators.sliding_attention import SlidingAttentionCacheAllocator

from batched_support import collect, fixture_draft, force_partly_right, greedy_config, left_padded, plain_greedy, prompts_of, rounds, small_cache
from conftest import tiny_gemma3_target
from dspark_hf.batching.paged_rewind import allocated_pages
from dspark_hf.batching.sliding_ring import SpeculativeSlidingRing, widen_sliding_rings

NEW = 40
WINDOW = 16  # tiny_gemma3_target's sliding_window


@pytest.fixture(scope="module")
def gemma():
    return tiny_gemma3_target()


def tiny_qwen3_sliding_target(window: int = 12, seed: int = 0):
    """The Qwen3 fixtures' pretend target with sliding-window and full-attention layers alternating."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=512, tie_word_embeddings=False,
        use_sliding_window=True, sliding_window=window, layer_types=["sliding_attention", "full_attention"] * 4,
    )
    return Qwen3ForCausalLM(cfg).eval()


def run(target, draft, prompts, **cache):
    results = target.generate_batch(inputs=prompts, generation_config=greedy_config(NEW), continuous_batching_config=small_cache(**cache),
                                    assistant_model=draft)
    assert all(r.error is None for r in results.values())
    return [r.generated_tokens for r in results.values()]


@pytest.mark.parametrize("requests", [1, 2, 4])
def test_gemma_sliding_window_every_batch_size(gemma, requests, monkeypatch):
    """Gemma 3 target (window 16, five sliding layers to one full), the Gemma 4 fixture draft forced right
    except at scheduled slots: prompts shorter and longer than the window, 40 new tokens each, so every
    sequence wraps its ring several times while blocks are partly rejected; every request stays exact."""
    draft = fixture_draft("gemma4_dspark_vanilla")
    prompts = prompts_of([5 + 9 * i for i in range(requests)], seed=40 + requests)
    plain = plain_greedy(gemma, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    assert run(gemma, draft, prompts) == plain
    steps = rounds(draft)
    assert any(s.accepted > 0 for s in steps) and any(s.accepted < s.verified for s in steps)
    assert min(len(p) for p in prompts) + NEW > WINDOW + draft.config.block_size, "no sequence went past its ring"


def test_qwen3_sliding_and_full_layers(monkeypatch):
    """Qwen3 with sliding (window 12) and full-attention layers alternating, pages of 4 tokens (ring pages
    released on rewinds while a request is shorter than its ring), its fixture draft forced partly right."""
    target = tiny_qwen3_sliding_target()
    draft = fixture_draft()
    prompts = prompts_of([3, 11, 26], seed=47)
    plain = plain_greedy(target, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain, wrong_every=4)
    assert run(target, draft, prompts, page_size=4) == plain
    assert any(s.accepted < s.verified for s in rounds(draft))


def test_real_draft_unforced(gemma):
    """The Gemma 4 fixture draft as it drafts (no forcing: its own tokens, mostly rejected), whole blocks
    and three slots: exact either way."""
    draft = fixture_draft("gemma4_dspark_vanilla")
    prompts = prompts_of([7, 19, 31], seed=49)
    plain = plain_greedy(gemma, prompts, NEW)
    for policy in ("whole", "fixed:3"):
        results = gemma.generate_batch(inputs=prompts, generation_config=greedy_config(NEW, policy),
                                       continuous_batching_config=small_cache(), assistant_model=draft)
        assert [r.generated_tokens for r in results.values()] == plain, policy


def test_ring_of_the_window_reads_and_writes_as_transformers(gemma):
    """With a ring of exactly the window, the ring's read and write indices are transformers' own for
    every past length (shorter and longer than the window, wrapped) and query length (1 to past the window)."""
    manager = gemma.init_continuous_batching(generation_config=greedy_config(4), continuous_batching_config=small_cache(page_size=4))
    processor = manager._create_batch_processor()
    try:
        allocator = next(a for a in processor.cache.cache_allocators.values() if isinstance(a, SlidingAttentionCacheAllocator))
        allocator.block_table["r"] = [5, 2, 9, 7]  # the window's 4 pages, in a scrambled order
        ring = SpeculativeSlidingRing.__new__(SpeculativeSlidingRing)
        ring.__dict__.update(allocator.__dict__)
        ring.ring = WINDOW
        for past in range(0, 3 * WINDOW):
            for query in (1, 2, 5, 8, WINDOW, WINDOW + 3):
                assert ring.get_read_indices("r", past, query) == allocator.get_read_indices("r", past, query), (past, query)
                assert ring.get_write_indices("r", past, query) == allocator.get_write_indices("r", past, query), (past, query)
                assert ring._compute_blocks_needed(0, past, query) == allocator._compute_blocks_needed(0, past, query)
    finally:
        manager.destroy()


def test_ring_pages_bounded_and_given_back(gemma, monkeypatch):
    """Pages of 4 tokens: while it runs, a request holds at most ceil((16 + 7) / 4) = 6 pages of a sliding
    group (its ring), after every rewind no ring page wholly past its kept length, and when every request
    has finished no page at all; the sliding allocators are rings of window + block size."""
    from dspark_hf.batching import processor as processor_module

    draft = fixture_draft("gemma4_dspark_vanilla")
    prompts = prompts_of([6, 21], seed=51)
    plain = plain_greedy(gemma, prompts, NEW)
    force_partly_right(monkeypatch, prompts, plain)
    real = processor_module.rewind_request
    seen = []

    def spy(cache, state, keep):
        count = real(cache, state, keep)
        for allocator in cache.cache_allocators.values():
            if isinstance(allocator, SpeculativeSlidingRing):
                held = len(allocator.block_table[state.request_id])
                seen.append((allocator.ring, held, keep, count))
        return count

    monkeypatch.setattr(processor_module, "rewind_request", spy)
    manager = gemma.init_continuous_batching(generation_config=greedy_config(NEW), continuous_batching_config=small_cache(page_size=4),
                                             assistant_model=draft)
    manager.start()
    try:
        assert collect(manager, [manager.add_request(p) for p in prompts]) == plain
        cache = manager.batch_processor.cache
        assert allocated_pages(cache) == 0, "pages left allocated"
    finally:
        manager.stop(block=True)
    block = draft.config.block_size
    assert seen and {ring for ring, *_ in seen} == {WINDOW + block}
    for ring, held, keep, _ in seen:
        assert held == -(-min(keep, ring) // 4), (ring, held, keep)
    assert any(count > 0 and keep < ring for ring, _, keep, count in seen), "no ring page was released on a rewind"
    assert any(keep >= ring for ring, _, keep, _ in seen), "no request filled its ring"


def test_widening_is_idempotent_and_refuses_a_used_cache(gemma):
    manager = gemma.init_continuous_batching(generation_config=greedy_config(4), continuous_batching_config=small_cache())
    processor = manager._create_batch_processor()
    try:
        cache = processor.cache
        sliding = sum(isinstance(a, SlidingAttentionCacheAllocator) for a in cache.cache_allocators.values())
        assert sliding == 1 and widen_sliding_rings(cache, 7) == 1 and widen_sliding_rings(cache, 7) == 0
        allocator = next(a for a in cache.cache_allocators.values() if isinstance(a, SpeculativeSlidingRing))
        assert allocator.ring == WINDOW + 7
        allocator.block_table["r"] = [1]
        with pytest.raises(RuntimeError):
            widen_sliding_rings(cache, 3)
    finally:
        manager.destroy()


def test_left_padded_generate_on_a_sliding_window_target(gemma):
    """``generate(ids, attention_mask=left_padding_mask, assistant_model=draft)`` on the Gemma 3 target:
    each row's new tokens are plain batch-1 greedy ``generate``'s."""
    draft = fixture_draft("gemma4_dspark_vanilla")
    prompts = prompts_of([4, 18, 9], seed=53)
    plain = plain_greedy(gemma, prompts, 24)
    ids, mask = left_padded(prompts)
    width = ids.shape[1]
    out = gemma.generate(ids, attention_mask=mask, assistant_model=draft, max_new_tokens=24, do_sample=False, eos_token_id=-1, pad_token_id=0)
    assert out[:, width:].tolist() == plain
    assert len(draft.last_batch_telemetry.requests) == 3
