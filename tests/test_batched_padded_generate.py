"""``generate(ids, attention_mask=mask, assistant_model=draft)`` with a left-padded batch of R > 1 runs
on the speculative continuous-batching engine and returns what plain batch-1 ``generate`` gives each
row, padded the way ``generate`` pads a batch; and what the engine cannot serve is refused in one line.

Mutation run once (the named test failed, then the change was reverted):
``padded.strip_left_padding`` keeping the padding (``prompts.append(row[start:])`` ->
``prompts.append(row)``): ``test_left_padded_batch_equals_batch_one`` fails.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from batched_support import fixture_draft, force_partly_right, left_padded, plain_greedy, prompts_of
from conftest import one_line, tiny_qwen3_target
from dspark_hf import DSparkV4Draft, TransformersVersionError, UnsupportedUsageError
from dspark_hf.batching.versions import check_batching_transformers

NEW = 16
PAD = 0


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3_target()


def test_left_padded_batch_equals_batch_one(target, monkeypatch):
    draft = fixture_draft()
    prompts = prompts_of([5, 13, 8], seed=31)
    free = plain_greedy(target, prompts, NEW)
    eos = free[2][6]
    plain = plain_greedy(target, prompts, NEW, eos_token_id=eos)
    force_partly_right(monkeypatch, prompts, free)
    ids, mask = left_padded(prompts)
    out = target.generate(ids, attention_mask=mask, assistant_model=draft, max_new_tokens=NEW, do_sample=False,
                          eos_token_id=eos, pad_token_id=PAD)
    longest = max(len(p) for p in plain)
    assert out.shape == (3, ids.shape[1] + longest)
    assert torch.equal(out[:, : ids.shape[1]], ids)
    for row, expected in zip(out[:, ids.shape[1]:].tolist(), plain):
        assert row == expected + [PAD] * (longest - len(expected))
    assert len(draft.last_batch_telemetry.requests) == 3


def test_batch_one_still_takes_the_batch_one_path(target):
    draft = fixture_draft()
    ids = torch.tensor([prompts_of([7], seed=33)[0]])
    out = target.generate(ids, assistant_model=draft, max_new_tokens=8, do_sample=False)
    assert torch.equal(out, target.generate(ids, max_new_tokens=8, do_sample=False))
    assert draft.last_telemetry.steps  # the batch-1 candidate generator ran


def test_refusals_are_one_line(target):
    draft = fixture_draft()
    ids, mask = left_padded(prompts_of([5, 9], seed=35))
    right = mask.flip(1)
    with pytest.raises(UnsupportedUsageError) as err:
        target.generate(ids, attention_mask=right, assistant_model=draft, max_new_tokens=4)
    assert "left-padded" in one_line(err)
    with pytest.raises(UnsupportedUsageError) as err:
        target.generate(ids, attention_mask=mask, assistant_model=draft, max_new_tokens=4, stop_strings=["x"], tokenizer=None)
    one_line(err)
    with pytest.raises(UnsupportedUsageError) as err:
        target.generate(ids, attention_mask=mask, assistant_model=draft, max_new_tokens=4, return_dict_in_generate=True)
    one_line(err)
    v4 = DSparkV4Draft.__new__(DSparkV4Draft)  # the refusal looks at the kind of draft only
    with pytest.raises(UnsupportedUsageError) as err:
        target.init_continuous_batching(generation_config=GenerationConfig(max_new_tokens=4), assistant_model=v4)
    assert "DeepSeek-V4" in one_line(err)
    with pytest.raises(TransformersVersionError) as err:
        check_batching_transformers("5.23.1")
    assert "5.23.1" in one_line(err)


def test_plain_generate_batch_is_unchanged(target):
    """Without a draft (or with a non-DSpark assistant) generate_batch is transformers' own."""
    from batched_support import greedy_config, small_cache

    prompts = prompts_of([4, 9], seed=37)
    results = target.generate_batch(inputs=prompts, generation_config=greedy_config(6), continuous_batching_config=small_cache())
    assert [r.generated_tokens for r in results.values()] == plain_greedy(target, prompts, 6)
