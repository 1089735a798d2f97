"""bfloat16 targets: verification forwards round exactly as plain decoding's one-token steps.

In bf16 a verification forward of ``L + 1`` rows used to compute attention with one multi-row SDPA call,
which rounds differently from ``L + 1`` one-row calls, and greedy DSpark output drifted from plain bf16
``generate`` (measured on SmolLM2 with the shipped draft: 5 of 10 prompts diverge within 64 tokens,
the first at new token 1). :mod:`dspark_hf.integration.exact_verification` computes such queries row by
row; with it, the output is identical. The negative control of each test is the same run with
``dspark_single_step_rows=False`` (the old batched forward), which must differ; it was run and differs.
Mutation run once (2026-12-03, this project's AMD EPYC CPU): the linear-layer row chunks off
(``chunk_verification_linears`` returning at once): ``test_bf16_dspark_equals_plain_bf16_generate``
fails (``down_proj``'s one-row kernel adds in another order than its multi-row one here).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import DynamicCache, GenerationConfig

from conftest import PlainGenerations, tiny_qwen3_target
from dspark_hf.transformers_compat import cache_kwargs
from dspark_hf.integration.exact_verification import single_step_rows



def _rows_vs_steps(model, ids, n_new, rowwise):
    """Logits of the last ``n_new`` tokens as one-token steps, and as one forward of ``n_new`` rows."""
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model(ids[:, :-n_new], use_cache=True, **cache_kwargs(model, cache))
        steps = [model(ids[:, -n_new + j:][:, :1], use_cache=True, **cache_kwargs(model, cache)).logits for j in range(n_new)]
        cache.crop(-n_new)
        with single_step_rows(model) if rowwise else contextlib.nullcontext():
            block = model(ids[:, -n_new:], use_cache=True, **cache_kwargs(model, cache)).logits
    return torch.cat(steps, dim=1), block


def test_verification_forward_rows_equal_one_token_steps_bitwise():
    """Eight rows over a 90-token cache on a tiny bf16 Qwen3 (SDPA): row by row, every logit equals the
    one-token step's bit for bit; the batched forward (negative control) differs somewhere."""
    model = tiny_qwen3_target().to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    ids = torch.randint(0, 384, (1, 98), generator=torch.Generator().manual_seed(1))
    steps, rows = _rows_vs_steps(model, ids, 8, rowwise=True)
    assert torch.equal(steps, rows)
    steps, batched = _rows_vs_steps(model, ids, 8, rowwise=False)
    assert not torch.equal(steps, batched), "negative control: the batched forward should round differently"


@pytest.fixture(scope="module")
def smollm2_bf16():
    from dspark_hf.bundled.draft import load_default_draft
    from dspark_hf.bundled.target import load_default_target
    from dspark_hf.eval_prompts import encode, load_prompts

    target, tokenizer = load_default_target(dtype=torch.bfloat16)
    draft = load_default_draft(dtype=torch.bfloat16)
    prompts = load_prompts("mt-bench", 40, 3) + load_prompts("gsm8k", 40, 3)
    return target, draft, [encode(tokenizer, p) for p in prompts]


@pytest.fixture(scope="module")
def plain_bf16(smollm2_bf16):
    """Plain bf16 greedy ``generate`` of prompt ``[i]`` (48 new tokens), computed once per module: the tests below
    compare against the same references."""
    target, _, prompts = smollm2_bf16
    return PlainGenerations(target, prompts, generation_config=GenerationConfig(max_new_tokens=48, do_sample=False))


def test_bf16_dspark_equals_plain_bf16_generate(smollm2_bf16, plain_bf16):
    """Six held-out prompts x 48 new tokens, shipped draft, bf16 target and draft: identical to plain
    bf16 generate with the default (row-by-row) verification; with ``dspark_single_step_rows=False``
    (negative control) at least one of them differs (asserted; it does on this CPU; the control stops at the
    first prompt that differs)."""
    target, draft, prompts = smollm2_bf16
    batched_differs = False
    for i, ids in enumerate(prompts):
        mask = torch.ones_like(ids)
        plain = plain_bf16[i]
        exact = target.generate(ids, attention_mask=mask, assistant_model=draft,
                                generation_config=GenerationConfig(max_new_tokens=48, do_sample=False))
        assert torch.equal(exact, plain)
        assert sum(s.accepted for s in draft.last_telemetry.steps) > 0
        if not batched_differs:
            batched = target.generate(ids, attention_mask=mask, assistant_model=draft,
                                      generation_config=GenerationConfig(max_new_tokens=48, do_sample=False, dspark_single_step_rows=False))
            batched_differs = not torch.equal(batched, plain)
    assert batched_differs, "negative control: the batched bf16 verification should drift on some prompt"


def test_bf16_dspark_under_inference_mode_equals_plain(smollm2_bf16):
    """The same under ``torch.inference_mode()`` (tensors without version counters; a user's usual wrapper for
    serving), whole block and fixed length 3, one prompt x 40 new tokens: identical to plain bf16 generate there.
    Regression: 876702e kept the row loop's mask answer keyed by ``mask._version``, which raises for inference
    tensors (run once at 876702e: "Inference tensors do not track version counter")."""
    target, draft, prompts = smollm2_bf16
    ids = prompts[3]
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        plain = target.generate(ids, attention_mask=mask, generation_config=GenerationConfig(max_new_tokens=40, do_sample=False))
        for policy in ("whole", "fixed:3"):
            out = target.generate(ids, attention_mask=mask, assistant_model=draft,
                                  generation_config=GenerationConfig(max_new_tokens=40, do_sample=False, dspark_policy=policy))
            assert torch.equal(out, plain), policy
            assert any(s.verified > 1 for s in draft.last_telemetry.steps)


def _forced_weight_major_rows(monkeypatch):
    """Every row count 1-9 in the weight-major scope, whatever this machine measured (machine-independent)."""
    from dspark_hf.integration import weight_major

    rows = tuple(range(1, 10))
    monkeypatch.setattr(weight_major, "_MEMORY", {})
    monkeypatch.setattr(weight_major, "weight_major_rows_for",
                        lambda target, **_: weight_major.WeightMajorRows("k", torch.__version__, rows, rows, (1.0,) * 9, (0.5,) * 9))


@pytest.mark.parametrize("kernel", ["real", "inexact"])
def test_bf16_dspark_with_weight_major_layers_equals_plain(smollm2_bf16, plain_bf16, monkeypatch, kernel):
    """Three held-out prompts x 48 new tokens, shipped draft, bf16: with every row count in the weight-major
    scope, DSpark's output is identical to plain bf16 generate. ``real``: the weight-major kernel itself (on
    a CPU where the probe finds it bit-identical, as on this project's Intel Xeon, it runs: asserted where
    the probe allows it). ``inexact``: a stand-in that adds each dot product in reverse order beyond one
    row; the probe keeps it to one-row steps and the output stays identical. Mutation run once:
    ``_chunked_linear_forward`` not asking the probe: ``inexact`` fails (the outputs differ)."""
    from dspark_hf.integration import linear_rows
    from dspark_hf.integration.linear_kernels import weight_major_linear

    _forced_weight_major_rows(monkeypatch)
    calls = []

    def reversed_order(x, weight, bias=None):
        if x.shape[1] > 1:
            out = (x.flip(-1).float() @ weight.flip(-1).float().T).to(weight.dtype)
            return out if bias is None else out + bias
        return weight_major_linear(x, weight, bias)

    def counting(x, weight, bias=None):
        calls.append(x.shape[1])
        return (weight_major_linear if kernel == "real" else reversed_order)(x, weight, bias)

    monkeypatch.setattr(linear_rows, "_weight_major_kernel", counting)
    monkeypatch.setattr(linear_rows, "_WEIGHT_MAJOR_EXACT", {})
    target, draft, prompts = smollm2_bf16

    def forget_probes():  # the layers keep their probe's answer while their weight stays: ask again with this kernel
        for module in target.modules():
            module.__dict__.pop(linear_rows._EXACT_ATTR, None)

    forget_probes()
    try:
        _generate_and_compare(target, draft, prompts, plain_bf16, kernel, calls, linear_rows)
    finally:
        forget_probes()


def _generate_and_compare(target, draft, prompts, plain_bf16, kernel, calls, linear_rows):
    for i, ids in enumerate(prompts[:3]):
        mask = torch.ones_like(ids)
        plain = plain_bf16[i]  # the references of the test above: plain generate never enters the scope
        calls.clear()
        out = target.generate(ids, attention_mask=mask, assistant_model=draft,
                              generation_config=GenerationConfig(max_new_tokens=48, do_sample=False, dspark_policy="whole"))
        assert torch.equal(out, plain)
        assert any(s.verified > 1 for s in draft.last_telemetry.steps)
        if kernel == "real" and linear_rows.weight_major_exact_rows(target.lm_head.weight) >= {2, 3, 4, 5, 6, 7, 8}:
            assert any(n > 1 for n in calls), "the weight-major kernel should run where the probe found it exact"
