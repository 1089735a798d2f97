"""Weight-major float32 verification linears (:mod:`dspark_hf.integration.weight_major`,
:mod:`dspark_hf.integration.linear_kernels`): the kernel equals ``F.linear`` to float32 rounding, it runs
in exactly the forwards it is meant for (verification forwards of the chosen row counts, one-token steps
over a cache only where one row is chosen, never a prefill, never outside a DSpark call), DSpark output stays plain ``generate``'s with it on
every row count, its measurement is stored and reused, and cost profiles measured with it carry their own key.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import GenerationConfig

from conftest import tiny_qwen3_target
from dspark_hf.integration import linear_rows, weight_major
from dspark_hf.integration.linear_kernels import weight_major_linear
from dspark_hf.integration.weight_major import WeightMajorRows, weight_major_rows_for, weight_major_verification
from dspark_hf.transformers_compat import cache_kwargs
from dspark_hf.verification.row_mode import verification_mode, weight_major_scope

TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # float32 sums of up to 1536 terms added in another order


@pytest.mark.parametrize("bias", [False, True])
def test_weight_major_linear_equals_f_linear(bias):
    """Every row count 1..9, with and without a bias, 3-D and 2-D inputs: equal to ``F.linear`` within
    float32 rounding (1e-5), shape and contiguity kept. Mutation run: dropping the bias -> the bias case fails."""
    torch.manual_seed(0)
    weight = torch.randn(96, 48)
    b = torch.randn(96) if bias else None
    for rows in range(1, 10):
        x = torch.randn(1, rows, 48)
        out = weight_major_linear(x, weight, b)
        assert out.shape == (1, rows, 96) and out.is_contiguous()
        torch.testing.assert_close(out, F.linear(x, weight, b), **TOLERANCE)
    x2 = torch.randn(5, 48)
    torch.testing.assert_close(weight_major_linear(x2, weight, b), F.linear(x2, weight, b), **TOLERANCE)


@pytest.fixture
def counted(monkeypatch):
    """Counts the weight-major calls of the prepared linear layers, by input row count."""
    calls: list[int] = []
    real = linear_rows.weight_major_linear

    def counting(x, weight, bias=None):
        calls.append(x.shape[1])
        return real(x, weight, bias)

    monkeypatch.setattr(linear_rows, "weight_major_linear", counting)
    monkeypatch.setattr(weight_major, "_COMPILED", {})  # the weight-major product, not the compiled kernel
    return calls


def _forward(target, ids, cache):
    positions = torch.arange(cache.get_seq_length(), cache.get_seq_length() + ids.shape[1])[None]
    return target(input_ids=ids, position_ids=positions, use_cache=True, **cache_kwargs(target, cache, positions[0])).logits


def _prefilled(target, ids):
    """A fresh ``DynamicCache`` holding ``ids`` (a prefill outside any scope)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=target.config)
    _forward(target, ids, cache)
    return cache


@torch.no_grad()
def test_weight_major_runs_only_in_verification_forwards_of_chosen_rows(counted):
    """Inside the scope for rows {2, 3}: a 3-row forward over a cache runs every linear layer weight-major
    (8 layers x 7 linears + LM head = 57 calls), and its logits match the ``F.linear`` forward's within
    1e-5; a 3-row prefill, a one-row step and a 4-row verification run none; outside the scope none.
    Mutation run: dropping the verification-forward condition in ``linear_rows._takes_weight_major`` ->
    the prefill runs weight-major and this test fails."""
    from transformers import DynamicCache

    target = tiny_qwen3_target()
    ids = torch.randint(0, 384, (1, 12))
    linear_rows.chunk_verification_linears(target)
    fresh_cache = lambda: _prefilled(target, ids[:, :8])  # noqa: E731

    expected = _forward(target, ids[:, 8:11], fresh_cache())
    with weight_major_scope({2, 3}):
        _forward(target, ids[:, :3], DynamicCache(config=target.config))  # a prefill of 3 rows
        assert counted == []
        got = _forward(target, ids[:, 8:11], fresh_cache())
        assert counted == [3] * 57
        torch.testing.assert_close(got, expected, **TOLERANCE)
        counted.clear()
        _forward(target, ids[:, 8:9], fresh_cache())
        _forward(target, ids[:, 8:12], fresh_cache())
        assert counted == []
    _forward(target, ids[:, 8:11], fresh_cache())
    assert counted == []


@torch.no_grad()
def test_one_row_steps_run_weight_major_only_where_one_row_is_chosen(counted):
    """Inside the scope for rows {1, 2}: a one-token step over a cache runs every linear layer weight-major
    (57 calls of one row, padded inside the kernel), its logits within 1e-5 of the ``F.linear`` step's; a
    one-token prefill (empty cache) and the same step outside the scope run none. Mutation run: keeping
    ``min_rows`` at 2 in ``linear_rows._enter`` -> the one-token step runs ``F.linear`` and this test fails."""
    from transformers import DynamicCache

    target = tiny_qwen3_target()
    ids = torch.randint(0, 384, (1, 9))
    linear_rows.chunk_verification_linears(target)
    fresh_cache = lambda: _prefilled(target, ids[:, :8])  # noqa: E731

    expected = _forward(target, ids[:, 8:9], fresh_cache())
    with weight_major_scope({1, 2}):
        _forward(target, ids[:, :1], DynamicCache(config=target.config))  # a prefill of one token
        assert counted == []
        got = _forward(target, ids[:, 8:9], fresh_cache())
        assert counted == [1] * 57
        torch.testing.assert_close(got, expected, **TOLERANCE)
    counted.clear()
    _forward(target, ids[:, 8:9], fresh_cache())
    assert counted == []


def _rows(rows, key="k"):
    n = len(weight_major.MEASURED_ROWS)
    return WeightMajorRows(key, torch.__version__, tuple(rows), weight_major.MEASURED_ROWS, (0.1,) * n, (0.05,) * n)


@pytest.fixture(scope="module")
def smollm2():
    from dspark_hf.bundled.draft import load_default_draft
    from dspark_hf.bundled.target import load_default_target

    target, tokenizer = load_default_target()
    return target, tokenizer, load_default_draft()


def test_dspark_output_equals_plain_with_weight_major_at_every_row_count(smollm2, monkeypatch, counted):
    """The bundled SmolLM2 (float32) and the shipped draft, weight-major forced at every row count 1-9
    (whatever this machine measured): whole-block, fixed:1 and fixed:0 (every round a one-token step) DSpark
    output equals plain ``generate`` on three prompts, 40 new tokens, and the weight-major kernel did run
    (forwards of 1, 2 and 8 rows); with ``dspark_weight_major=False`` it does not. Mutation runs: the kernel
    returning its rows in reverse order (``out.flip(0)`` in ``weight_major_linear``) -> outputs differ and
    this test fails; the one-row padding keeping the zero row's column instead of the input's (``[:, 1:]``)
    -> fixed:0's output differs."""
    target, tokenizer, draft = smollm2
    key = weight_major._key(target)
    monkeypatch.setitem(weight_major._MEMORY, key, frozenset(range(1, 10)))
    prompts = ["Write a haiku about the sea.", "What is 17 times 23?", "def fibonacci(n):"]
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        plain = target.generate(ids, generation_config=GenerationConfig(max_new_tokens=40, do_sample=False))
        for policy in ("whole", "fixed:1", "fixed:0"):
            config = GenerationConfig(max_new_tokens=40, do_sample=False, dspark_policy=policy)
            out = target.generate(ids, generation_config=config, assistant_model=draft)
            assert torch.equal(out, plain), (prompt, policy)
    assert {1, 2, 8} <= set(counted)
    counted.clear()
    config = GenerationConfig(max_new_tokens=8, do_sample=False, dspark_policy="whole", dspark_weight_major=False)
    target.generate(tokenizer("Hello", return_tensors="pt").input_ids, generation_config=config, assistant_model=draft)
    assert counted == []


def test_plain_generate_untouched_after_a_dspark_call(smollm2, monkeypatch):
    """After a DSpark call prepared the target's linear layers (weight-major forced at 2-9 rows), plain
    ``generate`` of a 3-token prompt (its prefill has 3 rows) returns scores bit-identical to those before.
    Mutation run: the same dropped verification condition as above -> the prefill's scores change."""
    target, tokenizer, draft = smollm2
    ids = tokenizer("The sea is", return_tensors="pt").input_ids[:, :3]
    config = GenerationConfig(max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        before = torch.stack(target.generate(ids, generation_config=config).scores)
    monkeypatch.setitem(weight_major._MEMORY, weight_major._key(target), frozenset(range(2, 10)))
    target.generate(ids, generation_config=GenerationConfig(max_new_tokens=6, do_sample=False, dspark_policy="whole"),
                    assistant_model=draft)
    with weight_major_scope(range(2, 10)):  # even inside the scope, plain forwards keep F.linear
        after = torch.stack(target.generate(ids, generation_config=config).scores)
    assert torch.equal(before, after)


def test_measurement_is_stored_and_reused(tmp_path, monkeypatch):
    """The first call measures and stores; the next reads the file without measuring; a file from another
    torch version, one that did not measure every row count of ``MEASURED_ROWS`` (one row), or one from before
    the compiled few-row kernel was timed, is measured again. Mutation runs: ignoring the torch version in
    ``stored_weight_major_rows`` -> the third-last assertion fails; ignoring the measured row counts -> the
    second-last does; dropping its ``compiled_note`` check -> the last one does."""
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    target = tiny_qwen3_target()
    key = weight_major._key(target)
    measured = []

    def measure(t):
        measured.append(1)
        return _rows((2, 3), key)

    assert weight_major_rows_for(target, measure=measure).rows == (2, 3) and measured == [1]
    assert weight_major_rows_for(target, measure=measure).rows == (2, 3) and measured == [1]
    path = weight_major._path(key)
    data = json.loads(path.read_text())
    data["torch"] = "0.0.0"
    path.write_text(json.dumps(data))
    weight_major_rows_for(target, measure=measure)
    assert measured == [1, 1]
    data = json.loads(path.read_text())
    data["measured"] = list(range(2, 10))  # a file from before one-row steps were measured
    path.write_text(json.dumps(data))
    weight_major_rows_for(target, measure=measure)
    assert measured == [1, 1, 1]
    data = json.loads(path.read_text())
    for field in ("compiled_rows", "compiled_seconds", "compiled_note"):  # a file from before the compiled kernel
        del data[field]
    path.write_text(json.dumps(data))
    weight_major_rows_for(target, measure=measure)
    assert measured == [1, 1, 1, 1]


def test_measure_weight_major_rows_reports_every_row_count():
    """A real (short) measurement on a tiny target: one median per kernel and row count, chosen rows those where
    weight-major or the compiled kernel was faster by the margin, compiled those where it beat weight-major."""
    target = tiny_qwen3_target()
    found = weight_major.measure_weight_major_rows(target, rows=(2, 3, 4), context_length=16, warmup=0, repeats=3)
    assert found.measured == (2, 3, 4) and len(found.linear_seconds) == len(found.weight_major_seconds) == 3
    assert all(s > 0 for s in found.linear_seconds + found.weight_major_seconds)
    compiled = found.compiled_seconds or (float("inf"),) * 3  # the compiled kernel, where it builds here
    assert len(compiled) == 3 and (found.compiled_seconds or found.compiled_note)
    assert set(found.rows) == {n for n, a, b, c in zip(found.measured, found.linear_seconds, found.weight_major_seconds, compiled)
                               if min(b, c) < 0.95 * a}
    assert set(found.compiled_rows) == {n for n, b, c in zip(found.measured, found.weight_major_seconds, compiled)
                                        if n in found.rows and c < b}
    assert "float32 verification linears" in found.describe()


def test_cost_profiles_measured_weight_major_carry_their_key():
    """A profile key inside the scope ends in ``__wm`` and equals the key of a profile measured there;
    outside it is the batched key. Mutation run: mapping ``"weight-major"`` to ``""`` in
    ``cost_profile._KEY_SUFFIX`` -> the two keys collide and this test fails."""
    from dspark_hf.verification.scheduling import profile_key
    from dspark_hf.verification.scheduling.cost_profile import CostProfile

    target = tiny_qwen3_target()
    batched = profile_key(target)
    with weight_major_scope({2}):
        assert verification_mode() == "weight-major"
        key = profile_key(target)
    assert verification_mode() == "batched"
    assert key == batched + "__wm"
    profile = CostProfile(model="m", device="d", dtype="float32", tokens=[1], target_seconds=[1.0], verification="weight-major")
    assert profile.key == "m__d__float32__wm" != CostProfile(model="m", device="d", dtype="float32", tokens=[1], target_seconds=[1.0]).key


def test_weight_major_verification_uses_the_measured_rows(monkeypatch):
    """The context takes the stored / measured rows (measured once per process and key), and an explicit
    ``rows`` overrides them."""
    target = tiny_qwen3_target()
    monkeypatch.setattr(weight_major, "weight_major_rows_for", lambda t: _rows((2, 4)))
    monkeypatch.setattr(weight_major, "_MEMORY", {})
    from dspark_hf.verification.row_mode import weight_major_rows

    with weight_major_verification(target):
        assert weight_major_rows() == frozenset({2, 4})
    with weight_major_verification(target, rows={3}):
        assert weight_major_rows() == frozenset({3})
    assert weight_major_rows() == frozenset()


def test_bench_linear_ablation_refused_with_concurrency(capsys):
    """``--linear-ablation`` belongs to prompt mode: with ``--concurrency`` it is refused in one line."""
    from dspark_hf.cli import main

    assert main(["bench", "--concurrency", "1,2", "--linear-ablation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--linear-ablation is for prompt mode" in err[0]


def test_batch_engine_verifies_weight_major_and_stays_exact(smollm2, monkeypatch, counted):
    """The batch engine's packed forwards of decoding requests run weight-major (forced here at every row
    count 1-16): ``generate_batch`` of 2 and then 4 prompts with the shipped draft under ``fixed:1`` (packed
    verification forwards of 2 to 8 rows), and of 1 and 2 prompts with no request drafting (plain steps of 1
    and 2 rows), equal plain batch-1 ``generate`` per prompt, and the kernel ran. Mutation runs: the kernel
    returning its rows in reverse order -> tokens differ; the processor's packed forward without
    ``weight_major_forward`` -> the kernel never runs; weight-major only on steps that verify (run k's
    processor) -> the plain steps' assertion on the kernel fails."""
    from batched_support import small_cache

    target, tokenizer, draft = smollm2
    monkeypatch.setitem(weight_major._MEMORY, weight_major._key(target), frozenset(range(1, 17)))
    prompts = [tokenizer(p, return_tensors="pt").input_ids[0].tolist()
               for p in ("Write a haiku about the sea.", "What is 17 times 23?", "def fibonacci(n):", "List three colours.")]
    eos = target.generation_config.eos_token_id
    plain = [target.generate(torch.tensor([p]), max_new_tokens=24, do_sample=False)[0, len(p):].tolist() for p in prompts]
    for count in (2, 4):
        config = GenerationConfig(max_new_tokens=24, do_sample=False, eos_token_id=eos, dspark_policy="fixed:1")
        results = target.generate_batch(inputs=prompts[:count], generation_config=config,
                                        continuous_batching_config=small_cache(num_blocks=64), assistant_model=draft)
        assert [r.generated_tokens for r in results.values()] == plain[:count]
    assert counted and set(counted) <= set(range(2, 9))
    # Plain steps (no request drafts: the hardware-aware policy with every request declining) run one row per
    # request, weight-major too, and stay exact.
    from conftest import synthetic_profile
    from dspark_hf.batching import processor as processor_module
    from dspark_hf.verification.policies import HardwareAware

    monkeypatch.setattr(processor_module, "requests_to_draft", lambda policy, confidences, *a, **k: [False] * len(confidences))
    counted.clear()
    for count in (1, 2):  # the last two prompts: both answers run 19+ tokens (the second prompt's ends at once)
        policy = HardwareAware(profile=synthetic_profile(draft.config.block_size), gate=False)
        config = GenerationConfig(max_new_tokens=24, do_sample=False, eos_token_id=eos, dspark_policy=policy)
        results = target.generate_batch(inputs=prompts[2:2 + count], generation_config=config,
                                        continuous_batching_config=small_cache(num_blocks=64), assistant_model=draft)
        assert [r.generated_tokens for r in results.values()] == plain[2:2 + count]
    assert {1, 2} <= set(counted)
