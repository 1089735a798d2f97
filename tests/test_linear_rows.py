"""Row-invariant linear layers for bf16 verification forwards (:mod:`dspark_hf.integration.linear_rows`).

A stand-in GEMM makes the property machine-independent: for inputs of more than ``SWITCH`` rows it adds
the terms of each dot product in reverse order (as a different kernel would), for fewer rows it is
torch's own row-by-row result. The probe must find ``SWITCH``; the chunked forward must then equal the
single rows bit for bit where the unchunked one does not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_qwen3_target
from dspark_hf.integration import linear_rows
from dspark_hf.integration.exact_verification import single_step_rows
from dspark_hf.integration.linear_rows import MAX_PROBED_ROWS, invariant_rows, linear_row_chunks, weight_major_exact_rows
from dspark_hf.transformers_compat import cache_kwargs
from dspark_hf.verification.row_mode import verification_mode, weight_major_scope

SWITCH = 3
_REAL_LINEAR = torch._C._nn.linear
_switch = [SWITCH]


def _other_order_linear(x, weight, bias=None):
    """torch's linear, one row at a time, up to ``_switch[0]`` rows; beyond, each dot product summed in
    float32 from the last term to the first, then rounded to the weight's dtype."""
    if x.dim() == 3 and x.shape[1] > _switch[0]:
        out = (x.flip(-1).float() @ weight.flip(-1).float().T).to(weight.dtype)
        return out if bias is None else out + bias
    if x.dim() == 3 and x.shape[1] > 1:
        return torch.cat([_REAL_LINEAR(x[:, i : i + 1], weight, bias) for i in range(x.shape[1])], dim=1)
    return _REAL_LINEAR(x, weight, bias)


@pytest.fixture
def other_order_kernel(monkeypatch):
    monkeypatch.setattr(linear_rows, "_kernel", _other_order_linear)
    monkeypatch.setattr(linear_rows, "_INVARIANT", {})
    _switch[0] = SWITCH
    yield
    _switch[0] = SWITCH


def test_probe_finds_where_the_kernel_changes_its_order(other_order_kernel):
    """The probe returns the largest row count whose rows all equal single rows: SWITCH here, and
    MAX_PROBED_ROWS for a kernel that never changes its order within that many rows.
    Mutation run once: the probe's order-revealing inputs replaced by ``torch.randn`` rows (and a randn
    weight): fails (16 returned: random inputs round to the same bf16 values under either order)."""
    weight = torch.empty(96, 1536, dtype=torch.bfloat16)
    assert invariant_rows(weight) == SWITCH
    _switch[0] = MAX_PROBED_ROWS
    linear_rows._INVARIANT.clear()
    assert invariant_rows(weight) == MAX_PROBED_ROWS


def test_chunked_rows_equal_single_rows(other_order_kernel):
    """A prepared ``nn.Linear`` under :func:`linear_row_chunks` runs an 8-row input as chunks of at most
    SWITCH rows and every output row is bit-identical to the one-row result (outside the block it is
    ``nn.Linear``'s own forward; a deep copy computes with its own weight); without the chunks (negative control) some row
    differs. Mutation run once: the chunk size taken as ``size + 1``: fails."""
    weight, x = linear_rows._probe_inputs(torch.empty(64, 1536, dtype=torch.bfloat16), seed=5)
    x = x[:, :8]
    single = torch.cat([_other_order_linear(x[:, i : i + 1], weight) for i in range(8)], dim=1)
    assert not torch.equal(_other_order_linear(x, weight), single), "negative control: the other-order kernel should differ"
    layer = torch.nn.Linear(1536, 64, bias=False, dtype=torch.bfloat16)
    layer.weight.data.copy_(weight)
    linear_rows.chunk_linear(layer)
    with torch.no_grad():
        assert torch.equal(layer(x), F.linear(x, weight))  # outside the block: nn.Linear's own forward
        with linear_row_chunks():
            chunked = layer(x)  # chunks through the stand-in kernel
    assert torch.equal(chunked, single)
    copy = __import__("copy").deepcopy(layer)
    copy.weight.data.zero_()
    with torch.no_grad(), linear_row_chunks():
        assert not copy(x).any() and torch.equal(layer(x), single)  # the copy computes with its own weight


def test_only_verification_forwards_of_the_scope_are_chunked(monkeypatch):
    """With the hooks on a target, a multi-row forward over a non-empty cache inside the row-by-row scope
    runs its linears chunked; the prefill (empty cache), one-token steps and every forward outside the
    scope do not. Mutation run once: ``_is_verification`` ignoring the cache (``rows > 1`` only): fails
    (the prefill is chunked)."""
    from transformers import DynamicCache

    model = tiny_qwen3_target().to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    seen = []
    monkeypatch.setattr(linear_rows, "invariant_rows", lambda weight, bias=None: seen.append(weight.shape) or 1)
    ids = torch.randint(0, 384, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), single_step_rows(model):
        seen.clear()  # the probes primed on entry (test_probes_run_when_the_context_is_entered)
        cache = DynamicCache(config=model.config)
        model(ids[:, :12], use_cache=True, **cache_kwargs(model, cache))
        model(ids[:, 12:13], use_cache=True, **cache_kwargs(model, cache))
        assert seen == []
        model(ids[:, 13:], use_cache=True, **cache_kwargs(model, cache))
        assert len(seen) > 0
    seen.clear()
    with torch.no_grad():
        cache.crop(-(cache.get_seq_length() - 13))
        model(ids[:, 13:], use_cache=True, **cache_kwargs(model, cache))
    assert seen == []


def test_probe_weight_has_the_weights_layout_and_alignment():
    """The probe's weight copies the real weight's shape, strides and offset from a 64-byte boundary
    (a memory-mapped checkpoint's tensors need not be aligned, and kernels may branch on it).
    Mutation run once: ``_like`` allocating with ``torch.empty_strided`` (always aligned): fails."""
    base = torch.empty(100_000, dtype=torch.bfloat16)
    for start in (0, 4, 20):
        weight = base[start : start + 96 * 153].view(96, 153)
        probe = linear_rows._like(weight)
        assert probe.shape == weight.shape and probe.stride() == weight.stride()
        assert probe.data_ptr() % 64 == weight.data_ptr() % 64


def _layout_sensitive_linear(x, weight, bias=None):
    """torch's linear for an input laid out as a fresh tensor (stride ``rows * in`` in dimension 0), each
    row as it would be alone; for a strided slice of a larger input (what ``x[:, a:b]`` gives), each dot
    product summed in another order, as torch's CPU linear does on its slower path for that layout."""
    if x.dim() == 3 and x.stride(0) != x.shape[1] * x.shape[2]:
        out = (x.flip(-1).float() @ weight.flip(-1).float().T).to(weight.dtype)
        return out if bias is None else out + bias
    return torch.cat([_REAL_LINEAR(x[0, i : i + 1].contiguous().unsqueeze(0), weight, bias) for i in range(x.shape[1])], dim=1)


def test_probe_and_chunks_pass_rows_laid_out_as_plain_decoding_does(monkeypatch):
    """The probe's single rows and its first ``m`` rows, and the chunks of a verification forward, reach the
    kernel laid out as fresh tensors, as plain decoding's one-token inputs are: with a kernel that takes
    another order for strided slices (torch's CPU linear takes another path for them: 155 ms against 9 ms
    for one row of a bf16 LM head on an Intel Xeon), the probe finds every row count invariant and chunks of
    one row equal the rows computed alone. Mutation run once: ``_rows`` returning the slice ``x[:, start:stop]``:
    fails (the probe returns 1 instead of 16; the chunks differ from the rows alone)."""
    monkeypatch.setattr(linear_rows, "_kernel", _layout_sensitive_linear)
    monkeypatch.setattr(linear_rows, "_INVARIANT", {})
    weight, x = linear_rows._probe_inputs(torch.empty(64, 1536, dtype=torch.bfloat16), seed=5)
    assert invariant_rows(weight) == MAX_PROBED_ROWS
    layer = torch.nn.Linear(1536, 64, bias=False, dtype=torch.bfloat16)
    layer.weight.data.copy_(weight)
    linear_rows.chunk_linear(layer)
    linear_rows._INVARIANT[linear_rows._probe_key(layer.weight, None)] = 1  # as if one row at a time were needed
    x = x[:, :6].clone()
    alone = torch.cat([_REAL_LINEAR(x[0, i : i + 1].clone().unsqueeze(0), weight) for i in range(6)], dim=1)
    with torch.no_grad(), linear_row_chunks():
        assert torch.equal(layer(x), alone)


def test_probes_run_when_the_context_is_entered(monkeypatch):
    """Entering :func:`single_step_rows` with a target probes every prepared linear layer of it at once, so
    the probes are not timed inside the first verification forward (on an Intel Xeon they were, 11.5 s of
    the first drafting round, and kept the drafting gate off: docs/measurements/2026-12-06). Mutation run
    once: ``single_step_rows`` without ``prime_invariant_rows``: fails (nothing probed on entry)."""
    model = tiny_qwen3_target().to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    seen = []
    monkeypatch.setattr(linear_rows, "invariant_rows", lambda weight, bias=None: seen.append(weight.data_ptr()) or 1)
    linears = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Linear)}
    with single_step_rows(model):
        assert set(seen) == linears and len(seen) == len(linears)


def test_a_layer_keeps_its_invariant_count_until_its_weight_changes(monkeypatch):
    """A prepared layer asks :func:`invariant_rows` once for its weight, not in every verification forward,
    and asks again once its weight is another tensor (``.to(float32)``), whose count then decides the chunks.
    Mutation run once: the kept key made constant (``key = None``): fails (the float32 weight is still cut
    into the bf16 weight's 2-row chunks)."""
    asked, chunks = [], []
    counts = {torch.bfloat16: 2, torch.float32: MAX_PROBED_ROWS}
    monkeypatch.setattr(linear_rows, "invariant_rows", lambda weight, bias=None: asked.append(weight.dtype) or counts[weight.dtype])
    monkeypatch.setattr(linear_rows, "_kernel", lambda x, weight, bias=None: chunks.append(x.shape[1]) or F.linear(x, weight, bias))
    layer = torch.nn.Linear(32, 16, dtype=torch.bfloat16)
    linear_rows.chunk_linear(layer)
    x = torch.randn(1, 5, 32)
    with torch.no_grad(), linear_row_chunks():
        layer(x.to(torch.bfloat16))
        layer(x.to(torch.bfloat16))
        assert asked == [torch.bfloat16] and chunks == [2, 2, 1, 2, 2, 1]
        layer.to(torch.float32)
        chunks.clear()
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert asked == [torch.bfloat16, torch.float32] and chunks == []


def test_weight_major_probe_keeps_only_row_counts_bit_identical_to_one_row_steps(monkeypatch):
    """:func:`weight_major_exact_rows` returns the row counts whose weight-major rows all equal one-row
    ``F.linear`` results bit for bit: 1..SWITCH for a stand-in that adds in another order beyond SWITCH rows,
    all of 1..MAX_PROBED_ROWS for one that never does. Mutation run once: the probe comparing on
    ``torch.randn`` inputs (and a randn weight) instead of the order-revealing ones: fails (all 16 counts
    returned: random inputs round to the same bf16 values under either order)."""
    monkeypatch.setattr(linear_rows, "_weight_major_kernel", _other_order_linear)
    monkeypatch.setattr(linear_rows, "_WEIGHT_MAJOR_EXACT", {})
    _switch[0] = SWITCH
    weight = torch.empty(96, 1536, dtype=torch.bfloat16)
    assert weight_major_exact_rows(weight) == frozenset(range(1, SWITCH + 1))
    _switch[0] = MAX_PROBED_ROWS
    linear_rows._WEIGHT_MAJOR_EXACT.clear()
    assert weight_major_exact_rows(weight) == frozenset(range(1, MAX_PROBED_ROWS + 1))
    _switch[0] = SWITCH


def test_row_mode_runs_layers_weight_major_only_where_listed_and_exact(monkeypatch):
    """Row-by-row mode with every row count in the weight-major scope, and a stand-in weight-major kernel that
    is bit-identical to one-row steps up to SWITCH rows only: a 2-row verification forward and a one-row step
    over the cache run it, a 7-row one does not (its layers keep ``F.linear`` chunks), the prefill never
    does, nor any forward without the scope; every logit equals plain one-token steps bit for bit.
    Mutation run once: ``_chunked_linear_forward`` not asking the probe (weight-major at every listed row
    count): fails (the 7-row forward runs the stand-in and its logits differ from the steps)."""
    from transformers import DynamicCache

    calls = []

    def counting(x, weight, bias=None):
        calls.append(x.shape[1])
        return _other_order_linear(x, weight, bias)

    monkeypatch.setattr(linear_rows, "_weight_major_kernel", counting)
    monkeypatch.setattr(linear_rows, "_WEIGHT_MAJOR_EXACT", {})
    _switch[0] = SWITCH
    model = tiny_qwen3_target().to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    ids = torch.randint(0, 384, (1, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model(ids[:, :20], use_cache=True, **cache_kwargs(model, cache))
        steps = torch.cat([model(ids[:, 20 + j : 21 + j], use_cache=True, **cache_kwargs(model, cache)).logits for j in range(10)], dim=1)
        cache.crop(-10)
        with single_step_rows(model):
            calls.clear()
            model(ids[:, 20:22], use_cache=True, **cache_kwargs(model, cache))
            assert calls == [] and verification_mode() == "rows"  # no scope: F.linear only
            cache.crop(-2)
            with weight_major_scope(range(1, MAX_PROBED_ROWS + 1)):
                assert verification_mode() == "rows-weight-major"
                linear_rows.prime_invariant_rows(model)  # the weight-major probes (which call the kernel) now
                calls.clear()
                short = DynamicCache(config=model.config)
                model(ids[:, :2], use_cache=True, **cache_kwargs(model, short))  # a 2-token prefill: never
                assert calls == []
                two = model(ids[:, 20:22], use_cache=True, **cache_kwargs(model, cache)).logits
                assert calls and set(calls) == {2}
                calls.clear()
                one = model(ids[:, 22:23], use_cache=True, **cache_kwargs(model, cache)).logits
                assert calls and set(calls) == {1}
                calls.clear()
                seven = model(ids[:, 23:30], use_cache=True, **cache_kwargs(model, cache)).logits
                assert calls == []
    assert torch.equal(torch.cat([two, one, seven], dim=1), steps)


def test_priming_both_probes_builds_each_shapes_references_once(monkeypatch):
    """Priming a bf16 target inside a weight-major scope runs both probes of every layer (the row-invariance
    count and the weight-major exact row counts) on one set of probe inputs and one-row references per weight
    layout: two seeds' inputs per probe key, not four; and the answers are those of the probes run one by one.
    Mutation run once: ``prime_invariant_rows`` without ``_shared_references``: fails (4 inputs per key)."""
    model = tiny_qwen3_target().to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    linear_rows.chunk_verification_linears(model)
    monkeypatch.setattr(linear_rows, "_INVARIANT", {})
    monkeypatch.setattr(linear_rows, "_WEIGHT_MAJOR_EXACT", {})
    made = []
    probe_inputs = linear_rows._probe_inputs
    monkeypatch.setattr(linear_rows, "_probe_inputs", lambda weight, seed: made.append(seed) or probe_inputs(weight, seed))
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    keys = {linear_rows._probe_key(m.weight, m.bias) for m in layers}
    with weight_major_scope(range(1, MAX_PROBED_ROWS + 1)):
        linear_rows.prime_invariant_rows(model)
    assert len(made) == 2 * len(keys) and set(linear_rows._INVARIANT) == keys == set(linear_rows._WEIGHT_MAJOR_EXACT)
    shared = (dict(linear_rows._INVARIANT), dict(linear_rows._WEIGHT_MAJOR_EXACT))
    linear_rows._INVARIANT.clear()
    linear_rows._WEIGHT_MAJOR_EXACT.clear()
    for m in layers:
        invariant_rows(m.weight, m.bias)
        weight_major_exact_rows(m.weight, m.bias)
    assert (linear_rows._INVARIANT, linear_rows._WEIGHT_MAJOR_EXACT) == shared
