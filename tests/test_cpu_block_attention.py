"""The CPU block-diagonal attention of packed forwards (:mod:`dspark_hf.integration.cpu_block_attention`):
equal to transformers' dense masked SDPA within float rounding, taken only for packed multi-request calls,
used by continuous batching (plain and speculative) with outputs still equal to batch-1 ``generate``, off
with ``DSPARK_HF_CPU_BLOCK_ATTENTION=0``, and recorded in the packed cost profile's key."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch
import transformers.integrations.sdpa_attention as sdpa_module
from transformers import GenerationConfig
from transformers.generation.continuous_batching.utils import build_attention_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import dspark_hf  # noqa: F401  (installs the wrapper)
from batched_support import fixture_draft, greedy_config, plain_greedy, prompts_of, small_cache
from conftest import tiny_gemma3_target, tiny_qwen3_target
from dspark_hf.batching.packed_profile import packed_key
from dspark_hf.integration import cpu_block_attention
from dspark_hf.integration.cpu_block_attention import _WRAPPED_FLAG, block_bounds, packed_attention
from dspark_hf.integration.cpu_gqa_attention import is_wrapped_by

# (query rows, cached keys) per request: decoding rows, verification blocks and a prefill side by side
LAYOUT = [(1, 40), (4, 17), (3, 0), (1, 63), (8, 5)]


def _packed(layout, heads, kv_heads, sliding_window=1, dim=16, seed=0):
    """Packed queries / keys / values of ``layout`` and the mask transformers' continuous batching builds
    for them (``build_attention_mask``: block-diagonal, causal, optionally sliding)."""
    g = torch.Generator().manual_seed(seed)
    cu_q, cu_k = [0], [0]
    for rows, cached in layout:
        cu_q.append(cu_q[-1] + rows)
        cu_k.append(cu_k[-1] + cached + rows)
    q = torch.randn(1, heads, cu_q[-1], dim, generator=g)
    k = torch.randn(1, kv_heads, cu_k[-1], dim, generator=g)
    v = torch.randn(1, kv_heads, cu_k[-1], dim, generator=g)
    mask = torch.full((1, 1, cu_q[-1], cu_k[-1]), torch.finfo(torch.float32).min)
    build_attention_mask(mask, cu_q, cu_k, sliding_window=sliding_window)
    kwargs = {"cu_seq_lens_q": torch.tensor(cu_q, dtype=torch.int32), "cu_seq_lens_k": torch.tensor(cu_k, dtype=torch.int32)}
    return q, k, v, mask, kwargs


@pytest.mark.parametrize("heads,kv_heads,window", [(9, 3, 1), (4, 4, 1), (4, 2, 6)], ids=["gqa", "mha", "sliding"])
def test_equal_to_dense_sdpa_within_rounding(heads, kv_heads, window):
    """Every request's rows equal transformers' dense masked SDPA within 2e-6 (float32; the softmax sums
    the same visible keys in another order), for grouped and plain heads and a sliding-window mask.
    Mutation run once: every block without its mask slice (``attn_mask=None``: rows see their block's
    later keys) fails every case (differences of order 1)."""
    q, k, v, mask, kwargs = _packed(LAYOUT, heads, kv_heads, sliding_window=window)
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, training=False)
    assert block_bounds(q, k, v, mask, 0.0, kwargs) is not None
    ours, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, q, k, v, mask, dropout=0.0, scaling=0.2, **kwargs)
    theirs, _ = sdpa_module.sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.2)
    assert ours.shape == theirs.shape == (1, q.shape[2], heads, 16)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)


def test_taken_only_for_packed_multi_request_calls(monkeypatch):
    """The block path runs for a packed call of several requests and for nothing else: one request, no
    cumulative lengths (an ordinary forward), no mask, lengths that do not cover the call, a position
    bias. Mutation run once: ``block_bounds`` without its ``len(bounds) > 1`` test takes the one-request
    call (the second assertion fails)."""
    seen = []
    real = cpu_block_attention.block_sdpa
    monkeypatch.setattr(cpu_block_attention, "block_sdpa", lambda *a: seen.append(len(a[-1])) or real(*a))
    module = types.SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)
    wrapper = ALL_ATTENTION_FUNCTIONS["sdpa"]
    q, k, v, mask, kwargs = _packed(LAYOUT, 9, 3)
    wrapper(module, q, k, v, mask, dropout=0.0, scaling=0.2, **kwargs)
    assert seen == [len(LAYOUT)]
    q1, k1, v1, mask1, kwargs1 = _packed(LAYOUT[:1] + [(0, 0)], 9, 3)  # one request with rows
    wrapper(module, q1, k1, v1, mask1, dropout=0.0, scaling=0.2, **kwargs1)
    wrapper(module, q, k, v, mask, dropout=0.0, scaling=0.2)
    assert seen == [len(LAYOUT)]
    assert block_bounds(q, k, v, None, 0.0, kwargs) is None
    assert block_bounds(q[:, :, :-1], k, v, mask[..., :-1, :], 0.0, kwargs) is None
    assert block_bounds(q, k, v, mask, 0.0, {**kwargs, "position_bias": torch.zeros(1)}) is None
    assert block_bounds(q, k, v, mask, 0.1, kwargs) is None


@pytest.mark.parametrize("make", [tiny_qwen3_target, tiny_gemma3_target], ids=["qwen3", "gemma3"])
def test_continuous_batching_takes_it_and_stays_exact(make, monkeypatch):
    """Plain ``generate_batch`` of four prompts of different lengths runs its packed forwards through the
    block path and every request's tokens equal batch-1 ``generate`` (float32; Qwen3 grouped heads,
    Gemma3 sliding-window layers). Mutation run once: reading every block's mask from the first request's
    columns (``attention_mask[..., q0:q1, :k1 - k0]``) makes the outputs differ from plain."""
    target = make()
    calls = []
    real = cpu_block_attention.block_sdpa
    monkeypatch.setattr(cpu_block_attention, "block_sdpa", lambda *a: calls.append(len(a[-1])) or real(*a))
    prompts = prompts_of([5, 19, 11, 30], seed=3, high=target.config.vocab_size)
    config = GenerationConfig(max_new_tokens=20, do_sample=False, eos_token_id=-1, pad_token_id=0)
    results = target.generate_batch(inputs=prompts, generation_config=config, continuous_batching_config=small_cache())
    assert [r.generated_tokens for r in results.values()] == plain_greedy(target, prompts, 20, eos_token_id=-1)
    assert calls and max(calls) == 4


def test_speculative_batch_exact_with_it(monkeypatch):
    """The speculative engine's packed verification forwards (four requests, the Qwen3 fixture draft, whole
    blocks) run through the block path and stay equal to batch-1 ``generate``."""
    target = tiny_qwen3_target()
    calls = []
    real = cpu_block_attention.block_sdpa
    monkeypatch.setattr(cpu_block_attention, "block_sdpa", lambda *a: calls.append(a[0].shape[2]) or real(*a))
    prompts = prompts_of([7, 22, 13, 4], seed=5)
    results = target.generate_batch(inputs=prompts, generation_config=greedy_config(24, "whole"),
                                    continuous_batching_config=small_cache(), assistant_model=fixture_draft())
    assert [r.generated_tokens for r in results.values()] == plain_greedy(target, prompts, 24)
    assert calls and max(calls) > 4  # forwards carrying drafted rows took it


def test_switched_off_by_environment_and_named_in_the_profile_key():
    """``DSPARK_HF_CPU_BLOCK_ATTENTION=0`` leaves the block wrapper out (the grouped-query one stays) in a
    fresh process, and the packed profile key says which attention was timed. Mutation run once:
    ignoring the variable in ``install_cpu_block_attention`` prints True for the switched-off process."""
    code = ("import dspark_hf; from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as A; "
            "from dspark_hf.integration import cpu_block_attention as b, cpu_gqa_attention as g; "
            "print(b.is_wrapped_by(A['sdpa'], b._WRAPPED_FLAG), g.is_wrapped_by(A['sdpa'], g._WRAPPED_FLAG), b.packed_attention('cpu'))")
    seen = {}
    for value in ("0", "1"):
        env = {**os.environ, "DSPARK_HF_CPU_BLOCK_ATTENTION": value, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen[value] = out.stdout.strip().splitlines()[-1]
    assert seen == {"0": "False True dense", "1": "True True block-diagonal"}
    assert is_wrapped_by(ALL_ATTENTION_FUNCTIONS["sdpa"], _WRAPPED_FLAG) and packed_attention("cpu") == "block-diagonal"
    assert packed_key("m__cpu__float32", "block-diagonal") == "m__cpu__float32__packed-bd"
    assert packed_key("m__cpu__float32", "dense") == "m__cpu__float32__packed"


def test_installed_only_on_the_tested_releases():
    """The wrapper's transformers range is the batch engine's pin, and releases outside it are not taken.
    Mutation run once: ``tested_release`` returning True fails the last assertion."""
    from dspark_hf.batching.versions import TESTED_TRANSFORMERS as ENGINE
    from dspark_hf.integration.cpu_block_attention import TESTED_TRANSFORMERS, tested_release

    assert TESTED_TRANSFORMERS == ENGINE
    assert tested_release("5.24.0") and tested_release("5.24.3")
    assert not tested_release("5.20.2") and not tested_release("5.25.0")
