"""EAGLE-3 drafts in a continuous batch (``generate_batch`` / the streaming manager / padded ``generate``):
every request's tokens equal plain batch-1 greedy ``generate`` of its prompt (float32), on the tiny
Qwen3 target with the EAGLE-3 fixture draft; the batched chains are the batch-1 rounds' (same tokens,
logits within 1e-4).

Mutations run once each (the named test failed, then the change was reverted):

- ``acceptance.verify_request``: accept one drafted token more than matched
  (``accepted = min(length, int(matches.cumprod(dim=0).sum()) + 1)``):
  ``test_eagle3_batch_equals_plain`` fails for every batch size;
- ``batched_eagle3.eagle3_chains``: the requests' features paired with the wrong requests
  (``zip(contexts, features[::-1], sequences)`` in the extends): ``test_chains_are_the_batch_one_rounds``
  fails (features of the wrong length refused), and so do the generation tests at R = 2 and 4;
- ``batched_eagle3.eagle3_chains``: the padding left visible (``own_slots`` replaced by all True in the
  chain steps' mask):
  ``test_chains_are_the_batch_one_rounds`` fails (logits differ);
- ``batched_drafting.new_context``: one draft cache shared by every request (a module-level context
  returned for EAGLE-3 drafts): every test fails.
"""

from __future__ import annotations

import copy

import pytest
import torch

from batched_support import collect, force_partly_right, greedy_config, left_padded, plain_greedy, prompts_of, rounds, small_cache
from conftest import EAGLE3_FIXTURES_DIR, tiny_qwen3_target
from dspark_hf import Eagle3Draft
from dspark_hf.batching.batched_drafting import draft_rounds, new_context
from dspark_hf.drafting.eagle3_round import Eagle3Context, eagle3_round

NEW = 24


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3_target()


def eagle3_fixture() -> Eagle3Draft:
    folder = sorted(p.parent for p in EAGLE3_FIXTURES_DIR.glob("*/config.json"))[0]
    return Eagle3Draft.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.mark.parametrize("requests", [1, 2, 4])
def test_eagle3_batch_equals_plain(target, requests, monkeypatch):
    """Prompts of different lengths; the fixture draft as it drafts, then forced right except at scheduled
    slots (chains partly accepted and partly rejected in the same packed forwards): every request exact."""
    draft = eagle3_fixture()
    prompts = prompts_of([5 + 8 * i for i in range(requests)], seed=60 + requests)
    plain = plain_greedy(target, prompts, NEW)
    run = lambda: [r.generated_tokens for r in target.generate_batch(  # noqa: E731
        inputs=prompts, generation_config=greedy_config(NEW), continuous_batching_config=small_cache(), assistant_model=draft).values()]
    assert run() == plain
    assert all(s.proposed == draft.config.ttt_length for s in rounds(draft))
    force_partly_right(monkeypatch, prompts, plain)
    assert run() == plain
    steps = rounds(draft)
    assert any(s.accepted > 0 for s in steps) and any(s.accepted < s.verified for s in steps)
    if requests > 1:
        assert max(s.decoding for s in draft.last_batch_telemetry.steps) == requests


def test_eagle3_streaming_and_padded_generate(target):
    """Requests added to a running manager, and a left-padded ``generate``: the same exact tokens."""
    draft = eagle3_fixture()
    prompts = prompts_of([6, 17, 11], seed=64)
    plain = plain_greedy(target, prompts, NEW)
    manager = target.init_continuous_batching(generation_config=greedy_config(NEW), continuous_batching_config=small_cache(), assistant_model=draft)
    manager.start()
    try:
        assert collect(manager, [manager.add_request(p) for p in prompts]) == plain
    finally:
        manager.stop(block=True)
    padded, mask = left_padded(prompts)
    width = padded.shape[1]
    out = target.generate(padded, attention_mask=mask, assistant_model=draft, max_new_tokens=NEW, do_sample=False,
                          eos_token_id=-1, pad_token_id=0)
    assert out[:, width:].tolist() == plain


def test_chains_are_the_batch_one_rounds(target):
    """``draft_rounds`` over three EAGLE-3 requests with ragged contexts (first round, and a later round
    after two positions committed) returns, request by request, the batch-1 ``eagle3_round``'s chain (the
    same tokens) and reported logits, and leaves each request's draft cache as that round leaves it. Float32;
    logits and cached keys / values within 1e-4 absolute (the batched chain's matrix products have ``R``
    rows, the batch-1 round's one: reduction order differs, measured differences about 1e-5)."""
    draft = eagle3_fixture()
    width = len(draft.config.target_layer_ids) * draft.config.target_hidden_size
    gen = torch.Generator().manual_seed(5)
    prefixes = [torch.randint(5, 300, (1, n), generator=gen) for n in (4, 9, 13)]
    contexts = [new_context(draft) for _ in prefixes]
    assert all(isinstance(c, Eagle3Context) for c in contexts) and len({id(c.cache) for c in contexts}) == 3
    for grow in (0, 2):
        prefixes = [torch.cat([p, torch.randint(5, 300, (1, grow), generator=gen)], dim=1) for p in prefixes]
        features = [torch.randn(1, p.shape[1] - 1 - c.committed, width, generator=gen) for p, c in zip(prefixes, contexts)]
        alone = [copy.deepcopy(c) for c in contexts]
        expected = [eagle3_round(draft, c, f, p) for c, f, p in zip(alone, features, prefixes)]
        got = draft_rounds(draft, contexts, features, prefixes)
        for e, g, a, c in zip(expected, got, alone, contexts):
            assert torch.equal(e.tokens, g.tokens) and g.confidences is None
            torch.testing.assert_close(g.logits, e.logits, atol=1e-4, rtol=0)
            assert c.committed == a.committed and c.cache.get_seq_length() == a.cache.get_seq_length()
            for la, lc in zip(a.cache.layers, c.cache.layers):
                torch.testing.assert_close(lc.keys, la.keys, atol=1e-4, rtol=0)
                torch.testing.assert_close(lc.values, la.values, atol=1e-4, rtol=0)
