"""The compiled few-row float32 kernel (:mod:`dspark_hf.integration.few_row_kernel`) and where it runs: it equals
``F.linear`` to float32 rounding at every row count it takes, falls back to ``F.linear`` for what it does not take
and where it cannot be built (saying why in one line), is chosen per row count only where measured fastest, keeps
DSpark output equal to plain ``generate`` at every row count (batch 1 and the batch engine), and cost profiles
measured with it carry their own key.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import GenerationConfig

from conftest import tiny_qwen3_target
from dspark_hf.integration import few_row_kernel, linear_rows, weight_major
from dspark_hf.integration.few_row_kernel import MAX_ROWS, few_row_linear, kernel_unavailable
from dspark_hf.verification.row_mode import compiled_rows, verification_mode, weight_major_rows, weight_major_scope

TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # float32 sums of up to 1536 terms added in another order


@pytest.fixture
def no_kernel_yet(monkeypatch):
    """A process that has not built or refused the kernel yet (the module keeps the outcome per process)."""
    monkeypatch.setattr(few_row_kernel, "_STATE", {})


def test_kernel_builds_wherever_there_is_a_compiler():
    """On a machine with ``cc`` (CI's and this project's) the kernel builds, so the tests below run it rather
    than the fallback."""
    if shutil.which("cc") is None:
        assert kernel_unavailable().startswith("no C compiler")
    else:
        assert kernel_unavailable() is None


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("in_features", [48, 50])
def test_few_row_linear_equals_f_linear(bias, in_features):
    """Every row count 1..16, with and without a bias, 3-D, 2-D and non-contiguous inputs, input widths a multiple
    of the vector width (48) and not (50: the tail loop): equal to ``F.linear`` within float32 rounding (1e-5),
    shape kept. Mutation runs: dropping the tail loop (``for (long k = vin; ...)``) -> the 50-wide cases fail;
    writing ``y[j * m + r]`` (rows and features swapped) -> every case above one row fails."""
    torch.manual_seed(0)
    weight = torch.randn(96, in_features)
    b = torch.randn(96) if bias else None
    for rows in range(1, MAX_ROWS + 1):
        x = torch.randn(1, rows, in_features)
        out = few_row_linear(x, weight, b)
        assert out.shape == (1, rows, 96) and out.dtype == torch.float32
        torch.testing.assert_close(out, F.linear(x, weight, b), **TOLERANCE)
    x2 = torch.randn(5, in_features)
    torch.testing.assert_close(few_row_linear(x2, weight, b), F.linear(x2, weight, b), **TOLERANCE)
    strided = torch.randn(in_features, 7).t()[None]  # [1, 7, in], not contiguous
    torch.testing.assert_close(few_row_linear(strided, weight, b), F.linear(strided, weight, b), **TOLERANCE)


def test_what_the_kernel_does_not_take_runs_f_linear():
    """bf16, more than ``MAX_ROWS`` rows and a non-contiguous weight run ``F.linear`` itself (bit-identical).
    Mutation run: ``_takes`` without its row-count bound -> the C guard refuses 17 rows, ``few_row_linear``
    raises and this test fails."""
    torch.manual_seed(0)
    weight = torch.randn(64, 32)
    cases = [(torch.randn(1, 3, 32).bfloat16(), weight.bfloat16()), (torch.randn(1, MAX_ROWS + 1, 32), weight),
             (torch.randn(1, 3, 64), weight.t())]
    for x, w in cases:
        assert torch.equal(few_row_linear(x, w), F.linear(x, w))


def test_no_compiler_is_one_line_and_nothing_uses_the_kernel(no_kernel_yet, monkeypatch):
    """With ``CC`` naming no program: one line that says so, ``F.linear`` results bit for bit, and the weight-major
    measurement does not time the kernel (its note says why). Mutation run: ``_build`` without its compiler check
    -> ``_library_path`` gets no compiler, a TypeError leaves ``kernel_unavailable`` and this test fails."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    reason = kernel_unavailable()
    assert reason == "no C compiler (/nonexistent/cc not found)"
    x, w = torch.randn(1, 3, 32), torch.randn(64, 32)
    assert torch.equal(few_row_linear(x, w), F.linear(x, w))
    found = weight_major.measure_weight_major_rows(tiny_qwen3_target(), rows=(2, 3), context_length=16, warmup=0, repeats=1)
    assert found.compiled_seconds == () and found.compiled_rows == () and found.compiled_note == reason


def test_a_failing_build_is_one_line(no_kernel_yet, monkeypatch, tmp_path):
    """A compiler that fails: one line naming it and its first error line; nothing is left in the kernel cache."""
    fake = tmp_path / "badcc"
    fake.write_text("#!/bin/sh\necho 'error: no such flag' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "cache"))
    assert kernel_unavailable() == f"{fake} failed: error: no such flag"
    assert list((tmp_path / "cache" / "kernels").glob("*.so")) == []


def test_the_built_library_belongs_to_one_cpu(monkeypatch, tmp_path):
    """The cached library's name depends on the CPU's model and flags (it is built with ``-march=native``, and a cache
    folder can move to another machine): another CPU gets another file, the same CPU the same. Mutation run: the CPU
    identity left out of ``_library_path``'s hash -> both CPUs share one file and this test fails."""
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    monkeypatch.setattr(few_row_kernel, "_cpu_identity", lambda: "model name: A\nflags: avx2 avx512f")
    first = few_row_kernel._library_path("/usr/bin/cc")
    assert few_row_kernel._library_path("/usr/bin/cc") == first
    monkeypatch.setattr(few_row_kernel, "_cpu_identity", lambda: "model name: B\nflags: avx2")
    assert few_row_kernel._library_path("/usr/bin/cc") != first


class _ScriptedSequence:
    """Stands in for ``PrefilledSequence``: a forward's seconds depend on the kernel the scope selects for its
    row count (``F.linear``, weight-major or compiled), from a script per row count."""

    script: dict = {}

    def __init__(self, target, counts, *, context_length, seed=0):
        pass

    def timed(self, n):
        linear, weight_major_s, compiled = self.script[n]
        if n in compiled_rows():
            return compiled
        return weight_major_s if n in weight_major_rows() else linear


def test_measurement_takes_the_fastest_kernel_per_row_count(monkeypatch):
    """Scripted costs per row count (F.linear, weight-major, compiled): 2 -> weight-major (fastest), 4 -> compiled,
    5 -> neither (best within the 5 % margin), 6 -> compiled. Mutation runs: listing a row count as compiled
    wherever the compiled kernel beats ``F.linear`` (not the weight-major product) -> row count 2 is listed and this
    test fails; timing the compiled kernel inside a scope without it (``compiled`` dropped from ``forward``) -> no
    row count is compiled."""
    from dspark_hf.verification.scheduling import profiler

    _ScriptedSequence.script = {2: (1.0, 0.7, 0.8), 4: (1.0, 1.2, 0.6), 5: (1.0, 0.98, 0.97), 6: (1.0, 0.9, 0.8)}
    monkeypatch.setattr(profiler, "PrefilledSequence", _ScriptedSequence)
    monkeypatch.setattr(weight_major, "_compiled_unavailable", lambda target: None)
    found = weight_major.measure_weight_major_rows(tiny_qwen3_target(), rows=(2, 4, 5, 6), warmup=0, repeats=3)
    assert found.rows == (2, 4, 6) and found.compiled_rows == (4, 6)
    assert found.compiled_seconds == (0.8, 0.6, 0.97, 0.8)
    assert "compiled few-row kernel at 4,6" in found.describe()


def test_profiles_measured_with_the_kernel_carry_their_key():
    """Inside a scope with compiled row counts the mode is ``weight-major-compiled`` and a profile key ends in
    ``__wmc``, apart from ``__wm`` (stored weight-major profiles, timed without the kernel, are not read for it).
    Mutation run: ``verification_mode`` ignoring the compiled rows -> the keys collide and this test fails."""
    from dspark_hf.verification.scheduling import profile_key

    target = tiny_qwen3_target()
    batched = profile_key(target)
    with weight_major_scope({2, 3}):
        plain_wm = profile_key(target)
    with weight_major_scope({2, 3}, compiled={3, 9}):
        assert compiled_rows() == frozenset({3})  # only counts the scope runs off F.linear
        assert verification_mode() == "weight-major-compiled"
        key = profile_key(target)
    assert compiled_rows() == frozenset() and verification_mode() == "batched"
    assert key == batched + "__wmc" != plain_wm == batched + "__wm"


@pytest.fixture(scope="module")
def smollm2():
    from dspark_hf.bundled.draft import load_default_draft
    from dspark_hf.bundled.target import load_default_target

    target, tokenizer = load_default_target()
    return target, tokenizer, load_default_draft()


@pytest.fixture
def counted(monkeypatch):
    """Counts the compiled kernel's calls from the prepared linear layers, by input row count."""
    calls: list[int] = []

    def counting(x, weight, bias=None):
        calls.append(x.shape[1])
        return few_row_linear(x, weight, bias)

    monkeypatch.setattr(linear_rows, "few_row_linear", counting)
    return calls


def test_dspark_output_equals_plain_with_the_kernel_at_every_row_count(smollm2, monkeypatch, counted):
    """The bundled SmolLM2 (float32) and the shipped draft, the compiled kernel forced at every row count 1-16
    (whatever this machine measured): whole-block, fixed:1 and fixed:0 DSpark output equals plain ``generate`` on
    three prompts, 40 new tokens, and the kernel ran (1, 2 and 8 rows); with ``dspark_few_row_kernel=False`` it
    does not; the batch engine's packed forwards (``generate_batch`` of 3 prompts, fixed:1: 2-6 rows) run it and
    stay equal to plain batch-1 ``generate``. Mutation run: the kernel's result with its rows in reverse order
    (``out.flip(0)`` in ``few_row_linear``) -> outputs differ and this test fails."""
    from batched_support import small_cache

    target, tokenizer, draft = smollm2
    key = weight_major._key(target)
    monkeypatch.setitem(weight_major._MEMORY, key, frozenset(range(1, 17)))
    monkeypatch.setitem(weight_major._COMPILED, key, frozenset(range(1, 17)))
    prompts = ["Write a haiku about the sea.", "What is 17 times 23?", "def fibonacci(n):"]
    plain = {}
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        plain[prompt] = target.generate(ids, generation_config=GenerationConfig(max_new_tokens=40, do_sample=False))
        for policy in ("whole", "fixed:1", "fixed:0"):
            config = GenerationConfig(max_new_tokens=40, do_sample=False, dspark_policy=policy)
            out = target.generate(ids, generation_config=config, assistant_model=draft)
            assert torch.equal(out, plain[prompt]), (prompt, policy)
    assert {1, 2, 8} <= set(counted)
    counted.clear()
    config = GenerationConfig(max_new_tokens=8, do_sample=False, dspark_policy="whole", dspark_few_row_kernel=False)
    target.generate(tokenizer("Hello", return_tensors="pt").input_ids, generation_config=config, assistant_model=draft)
    assert counted == []
    ids = [tokenizer(p, return_tensors="pt").input_ids[0].tolist() for p in prompts]
    config = GenerationConfig(max_new_tokens=24, do_sample=False, eos_token_id=target.generation_config.eos_token_id,
                              dspark_policy="fixed:1")
    results = target.generate_batch(inputs=ids, generation_config=config, continuous_batching_config=small_cache(num_blocks=64),
                                    assistant_model=draft)
    assert [r.generated_tokens for r in results.values()] == [plain[p][0, len(i):len(i) + 24].tolist() for p, i in zip(prompts, ids)]
    assert set(counted) & set(range(2, 7))
