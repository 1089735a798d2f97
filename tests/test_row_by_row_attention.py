"""The row-by-row attention of bf16 verification forwards (:mod:`dspark_hf.integration.exact_verification`):
which rows need a mask, and which function each row's one-row call reaches."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from dspark_hf.integration import exact_verification
from dspark_hf.integration.cpu_gqa_attention import ONE_ROW_PASS_THROUGH, past_one_row_pass_throughs
from dspark_hf.integration.exact_verification import fully_visible_rows


def _per_row_reference(mask: torch.Tensor, rows: int, keys: int) -> list[bool]:
    """Row ``i`` sees every key a one-token step at its position sees: its mask row over the first
    ``keys - rows + i + 1`` keys allows all of them (``True`` or ``0.0``)."""
    answer = []
    for i in range(rows):
        row = mask[..., i, : keys - rows + i + 1]
        answer.append(bool(row.all()) if row.dtype == torch.bool else bool((row == 0).all()))
    return answer


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_visible_rows_match_the_per_row_check(kind):
    """On causal masks over a cache, with and without left padding (keys hidden from every row) and with a
    hole in the middle of the prefix for some rows only, the one-check-per-forward answer equals the per-row
    check row by row; keys after a row's own position never count against it. Mutation run once: the
    ``| ~seen`` term dropped (future keys counted): fails (every row but the last reported masked)."""
    generator = torch.Generator().manual_seed(0)
    rows, keys = 6, 40
    first = keys - rows + 1
    causal = torch.arange(keys)[None, :] < torch.arange(first, keys + 1)[:, None]
    cases = [causal.clone()]
    padded = causal.clone()
    padded[:, :3] = False  # left padding
    cases.append(padded)
    holed = causal.clone()
    holed[2:4, 10] = False  # rows 2 and 3 only
    cases.append(holed)
    for _ in range(5):
        random_mask = causal & (torch.rand(rows, keys, generator=generator) > 0.02)
        cases.append(random_mask)
    for allowed in cases:
        mask = allowed[None, None]
        if kind == "float":
            mask = torch.zeros(1, 1, rows, keys, dtype=torch.bfloat16).masked_fill(~mask, torch.finfo(torch.bfloat16).min)
        assert fully_visible_rows(mask, rows, keys) == _per_row_reference(mask, rows, keys)
    assert fully_visible_rows(None, rows, keys) == [True] * rows


@pytest.mark.parametrize("inference", [False, True])
def test_fully_visible_rows_sees_an_in_place_change_of_the_same_mask(inference):
    """The answer is kept for the last mask of the thread (every layer of a forward passes the same tensor),
    but a mask changed in place is checked again, also for a tensor made under ``torch.inference_mode`` (which
    has no version counter). Mutations run once: the tensor's ``_version`` left out of the kept key: fails (the
    stale all-visible answer is returned); the ``is_inference`` test removed: fails (torch raises "Inference
    tensors do not track version counter")."""
    rows, keys = 4, 20
    first = keys - rows + 1
    with torch.inference_mode(inference):
        mask = (torch.arange(keys)[None, :] < torch.arange(first, keys + 1)[:, None])[None, None].clone()
        assert fully_visible_rows(mask, rows, keys) == [True] * rows
        mask[..., 0] = False
        assert fully_visible_rows(mask, rows, keys) == [False] * rows


def test_rows_reach_the_function_below_this_packages_one_row_pass_throughs(monkeypatch):
    """Each one-row call of the row loop goes to the first function under the attention wrappers of this
    package that pass a one-row query on unchanged (the CPU grouped-query and block-diagonal ones), with the
    same arguments it would have reached through them; a wrapper not of this package stops the skipping.
    Mutation run once: ``past_one_row_pass_throughs`` returning its argument: fails (the wrappers are called
    once per row)."""
    calls = []

    def innermost(module, query, key, value, attention_mask, **kwargs):
        calls.append(("inner", query.shape[2], key.shape[2], attention_mask))
        return query.transpose(1, 2), None

    def passing(module, query, key, value, attention_mask, **kwargs):
        calls.append(("wrapper", query.shape[2]))
        return innermost(module, query, key, value, attention_mask, **kwargs)

    def foreign(module, query, key, value, attention_mask, **kwargs):
        calls.append(("foreign", query.shape[2]))
        return passing(module, query, key, value, attention_mask, **kwargs)

    passing.__wrapped__ = innermost
    setattr(passing, ONE_ROW_PASS_THROUGH, True)
    foreign.__wrapped__ = passing
    top = lambda *a, **k: passing(*a, **k)  # noqa: E731
    top.__wrapped__ = passing
    setattr(top, ONE_ROW_PASS_THROUGH, True)
    assert past_one_row_pass_throughs(top) is innermost
    assert past_one_row_pass_throughs(foreign) is foreign

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", top)
    exact_verification.install_single_step_attention()
    wrapped = ALL_ATTENTION_FUNCTIONS["sdpa"]
    query = torch.randn(1, 2, 3, 8)
    key = value = torch.randn(1, 2, 10, 8)
    with exact_verification.row_by_row_scope():
        out, _ = wrapped(None, query, key, value, None)
    assert calls == [("inner", 1, 8, None), ("inner", 1, 9, None), ("inner", 1, 10, None)]
    assert torch.equal(out, query.transpose(1, 2))


@pytest.mark.parametrize("grad_mode", ["no_grad", "inference_mode"])
def test_rows_over_a_left_padded_cache_equal_one_token_steps_bitwise(grad_mode):
    """Batch-1 input with left padding (the mask hides the first keys from every row): a bf16 verification
    forward of six rows, row by row, gives every logit of the one-token steps with the same mask bit for bit,
    so rows that cannot see every key keep their mask through the row loop, under ``torch.no_grad`` and under
    ``torch.inference_mode`` (a mask without a version counter). Mutation run once: the row loop passing no mask
    for any row (``mask = None``): fails (the padded keys are attended)."""
    from transformers import DynamicCache

    from conftest import tiny_qwen3_target
    from dspark_hf.integration.exact_verification import single_step_rows
    from dspark_hf.transformers_compat import cache_kwargs

    model = tiny_qwen3_target().to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    ids = torch.randint(0, 384, (1, 60), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[:, :5] = 0
    new = 6
    with torch.no_grad() if grad_mode == "no_grad" else torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(ids[:, :-new], attention_mask=mask[:, :-new], use_cache=True, **cache_kwargs(model, cache))
        steps = [model(ids[:, -new + j :][:, :1], attention_mask=mask[:, : ids.shape[1] - new + j + 1], use_cache=True,
                       **cache_kwargs(model, cache)).logits for j in range(new)]
        cache.crop(-new)
        with single_step_rows(model):
            rows = model(ids[:, -new:], attention_mask=mask, use_cache=True, **cache_kwargs(model, cache)).logits
    assert torch.equal(torch.cat(steps, dim=1), rows)
