"""The CPU grouped-query SDPA path (:mod:`dspark_hf.integration.cpu_gqa_attention`): bit-identical to
transformers' own ``"sdpa"`` attention, taken only where it applies, and off with ``DSPARK_HF_CPU_GQA=0``."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch
import transformers.integrations.sdpa_attention as sdpa_module
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import dspark_hf  # noqa: F401  (installs the wrapper)
from dspark_hf.integration.cpu_gqa_attention import _WRAPPED_FLAG, grouped_query_applies, is_wrapped_by
from tests.conftest import tiny_gemma3_target, tiny_qwen3_target


def _qkv(batch, rows, keys, heads=9, kv_heads=3, dim=64, dtype=torch.float32):
    g = torch.Generator().manual_seed(rows * 100 + keys + batch)
    q = torch.randn(batch, heads, rows, dim, generator=g).to(dtype)
    k = torch.randn(batch, kv_heads, keys, dim, generator=g).to(dtype)
    v = torch.randn(batch, kv_heads, keys, dim, generator=g).to(dtype)
    return q, k, v


def _causal_mask(batch, rows, keys, kind, dtype):
    """The mask transformers builds for ``rows`` queries after ``keys - rows`` cached positions, with
    the first key of batch row 1 padded out (left padding)."""
    visible = torch.arange(keys)[None, :] <= torch.arange(keys - rows, keys)[:, None]
    visible = visible[None, None].repeat(batch, 1, 1, 1)
    if batch > 1:
        visible[1, :, :, 0] = False
    if kind == "bool":
        return visible
    return torch.where(visible, torch.zeros((), dtype=dtype), torch.full((), torch.finfo(dtype).min, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["bool", "additive"])
@pytest.mark.parametrize("batch,rows,keys", [(1, 2, 40), (1, 8, 263), (2, 3, 17), (1, 5, 5)])
def test_bit_identical_to_transformers_sdpa(dtype, kind, batch, rows, keys):
    """The wrapper's output equals transformers' ``sdpa_attention_forward`` bit for bit (float32 and
    bf16; boolean and additive masks; one and two sequences, left padding; queries over a cache and a
    prefill), with a scaling other than SDPA's default. Mutation run once: passing ``scale=None`` in
    ``grouped_query_sdpa`` (SDPA's default 1/sqrt(d) instead of the module's scaling) fails every case."""
    q, k, v = _qkv(batch, rows, keys, dtype=dtype)
    mask = _causal_mask(batch, rows, keys, kind, dtype)
    module = types.SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)
    wrapper = ALL_ATTENTION_FUNCTIONS["sdpa"]
    assert is_wrapped_by(wrapper, _WRAPPED_FLAG)
    assert grouped_query_applies(module, q, k, v, mask, 0.0, {})
    ours, _ = wrapper(module, q, k, v, mask, dropout=0.0, scaling=0.11)
    theirs, _ = sdpa_module.sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.11)
    assert ours.shape == theirs.shape == (batch, rows, 9, 64)
    assert torch.equal(ours, theirs)


def test_path_taken_only_where_it_applies(monkeypatch):
    """A masked multi-row grouped-query call on CPU never copies keys/values per head (transformers'
    ``repeat_kv``); a one-row step, a call without groups, with a position bias or with a mask of
    None goes to transformers' function. Mutation run once: ``grouped_query_applies`` returning False
    makes the first assertion fail (``repeat_kv`` called twice)."""
    calls = []
    real = sdpa_module.repeat_kv
    monkeypatch.setattr(sdpa_module, "repeat_kv", lambda x, n: calls.append(n) or real(x, n))
    wrapper = ALL_ATTENTION_FUNCTIONS["sdpa"]
    grouped = types.SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)
    q, k, v = _qkv(1, 4, 30)
    mask = _causal_mask(1, 4, 30, "bool", torch.float32)
    wrapper(grouped, q, k, v, mask, dropout=0.0, scaling=0.125)
    assert calls == []
    sdpa_module.sdpa_attention_forward(grouped, q, k, v, mask, dropout=0.0, scaling=0.125)
    assert calls == [3, 3]  # transformers' own function copies on CPU: what the wrapper avoids
    assert not grouped_query_applies(grouped, q[:, :, :1], k, v, mask[..., :1, :], 0.0, {})
    assert not grouped_query_applies(grouped, q, k, v, None, 0.0, {})
    assert not grouped_query_applies(grouped, q, k, v, mask, 0.0, {"position_bias": torch.zeros(1)})
    assert not grouped_query_applies(grouped, q, k, v, mask, 0.1, {})
    assert not grouped_query_applies(types.SimpleNamespace(num_key_value_groups=1), q, k, k, mask, 0.0, {})


@pytest.mark.parametrize("make", [tiny_qwen3_target, tiny_gemma3_target], ids=["qwen3", "gemma3"])
def test_model_forward_over_cache_bit_identical(make, monkeypatch):
    """A 5-row forward over a cache (a verification forward), and a left-padded batch of two, give the
    same logits bit for bit with the wrapper and with transformers' own ``"sdpa"`` (Qwen3: GQA 4/2;
    Gemma3: sliding window and soft-capped logits). Mutation run once: dropping ``attn_mask`` in
    ``grouped_query_sdpa`` fails both models (the cached rows attend to the future)."""
    target = make()
    assert target.config._attn_implementation == "sdpa"
    ids = torch.randint(3, 300, (1, 37), generator=torch.Generator().manual_seed(1))

    def run():
        with torch.no_grad():
            out = target(ids[:, :32], use_cache=True)
            step = target(ids[:, 32:], past_key_values=out.past_key_values, use_cache=True).logits
            padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids[:, :33]], dim=1)
            batch = torch.cat([ids[:, :37], padded], dim=0)
            mask = torch.ones_like(batch)
            mask[1, :4] = 0
            both = target(batch, attention_mask=mask).logits
        return step, both

    ours = run()
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", sdpa_module.sdpa_attention_forward)
    theirs = run()
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[1][:, 5:], theirs[1][:, 5:])


def test_switched_off_by_environment():
    """``DSPARK_HF_CPU_GQA=0`` leaves transformers' ``"sdpa"`` attention unwrapped (a fresh process);
    without it, ``import dspark_hf`` wraps it. Mutation run once: ignoring the variable in
    ``install_cpu_gqa_attention`` prints True for the switched-off process."""
    code = ("import dspark_hf; from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as A; "
            "from dspark_hf.integration.cpu_gqa_attention import is_wrapped_by, _WRAPPED_FLAG; "
            "print(is_wrapped_by(A['sdpa'], _WRAPPED_FLAG))")
    seen = {}
    for value in ("0", "1"):
        env = {**os.environ, "DSPARK_HF_CPU_GQA": value, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen[value] = out.stdout.strip().splitlines()[-1]
    assert seen == {"0": "False", "1": "True"}
