"""One batched draft forward over ragged per-request contexts equals each request's own drafting
round: same tokens, same reported logits and confidences (to 1e-4), same context caches afterwards,
over three rounds with different numbers of new feature rows per request, for the Qwen3 fixture
drafts (vanilla, rnn head, DFlash without a confidence head) and the Gemma4 one.

Mutation run once (the test failed, then the change was reverted): the attention mask letting each
request see one padding slot before its cached rows (``width_c - cached[r]`` ->
``max(0, width_c - cached[r] - 1)`` in the mask): ``test_batched_rounds_equal_per_request_rounds``
fails (logits differ).
"""

from __future__ import annotations

import pytest
import torch

from batched_support import fixture_draft
from dspark_hf.batching.batched_drafting import draft_rounds
from dspark_hf.drafting.round import DraftContext, draft_round

NEW_ROWS = [(0, 0, 0), (3, 1, 5), (2, 4, 1)]  # new positions per request and round, after the prompts


@pytest.mark.parametrize("name", ["qwen3_dspark_vanilla", "qwen3_dspark_rnn", "qwen3_dflash", "gemma4_dspark_vanilla"])
def test_batched_rounds_equal_per_request_rounds(name):
    draft = fixture_draft(name)
    width = len(draft.config.target_layer_ids) * draft.config.target_hidden_size
    generator = torch.Generator().manual_seed(0)
    prompts = [5, 12, 9]
    sequences = [torch.randint(5, 200, (1, n + 30), generator=generator) for n in prompts]
    features = [torch.randn(1, n + 30, width, generator=generator) for n in prompts]
    alone = [DraftContext(draft) for _ in prompts]
    together = [DraftContext(draft) for _ in prompts]
    ends = list(prompts)
    for added in NEW_ROWS:
        ends = [e + a for e, a in zip(ends, added)]
        prefixes = [s[:, :e] for s, e in zip(sequences, ends)]
        rows = [f[:, ctx.committed : e - 1] for f, ctx, e in zip(features, alone, ends)]
        expected = [draft_round(draft, ctx, r, p) for ctx, r, p in zip(alone, rows, prefixes)]
        got = draft_rounds(draft, together, rows, prefixes)
        for a, b, ca, cb in zip(expected, got, alone, together):
            assert torch.equal(a.tokens, b.tokens)
            torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=1e-4)
            if a.confidences is not None:
                torch.testing.assert_close(a.confidences, b.confidences, atol=1e-5, rtol=1e-4)
            assert ca.committed == cb.committed
            for layer in range(draft.config.num_hidden_layers):
                torch.testing.assert_close(ca.cache.layers[layer].keys, cb.cache.layers[layer].keys, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(ca.cache.layers[layer].values, cb.cache.layers[layer].values, atol=1e-5, rtol=1e-5)


def test_feature_count_is_checked():
    draft = fixture_draft()
    width = len(draft.config.target_layer_ids) * draft.config.target_hidden_size
    contexts = [DraftContext(draft), DraftContext(draft)]
    prefixes = [torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9]])]
    with pytest.raises(ValueError):
        draft_rounds(draft, contexts, [torch.zeros(1, 2, width), torch.zeros(1, 3, width)], prefixes)
