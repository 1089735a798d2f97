"""The packed forward's cost curves (``dspark profile --packed``) and the hardware-aware policy of a
speculative batch scheduling on them.

Mutation run once (the named test failed, then the change was reverted): ``Speculation.steps_per_second_for``
ignoring the packed profile (``return None`` first): ``test_batch_is_scheduled_on_the_packed_curve``
fails (the batch-1 curve, on which no slot pays, gives length 0).
"""

from __future__ import annotations

import pytest

from batched_support import fixture_draft, greedy_config, plain_greedy, prompts_of, small_cache
from conftest import tiny_qwen3_target
from dspark_hf.batching.packed_profile import (
    PackedCostProfile, find_packed_profile, load_packed_profile, profile_packed, save_packed_profile,
)
from dspark_hf.integration.cpu_block_attention import packed_attention
from dspark_hf.verification.policies import HardwareAware
from dspark_hf.verification.scheduling.cost_profile import CostProfile, device_name, dtype_name, model_name, save_profile


@pytest.fixture(scope="module")
def target():
    return tiny_qwen3_target()


def test_profile_packed_measures_one_curve_per_request_count(target, tmp_path):
    profile = profile_packed(target, requests=(1, 3), extra=(0, 2, 5), context_length=24, warmup=1, repeats=2)
    assert sorted(profile.curves) == [1, 3]
    assert profile.curves[3].tokens == [3, 5, 8, 9, 18] and profile.curves[1].tokens == [1, 3, 6]
    assert all(s > 0 for c in profile.curves.values() for s in c.target_seconds)
    assert profile.curve(2) is profile.curves[3] and profile.curve(7) is profile.curves[3] and profile.curve(1) is profile.curves[1]
    path = save_packed_profile(profile, tmp_path / "p.json")
    again = load_packed_profile(path)
    assert again.curves[3].target_seconds == profile.curves[3].target_seconds
    assert target.config._attn_implementation == "sdpa"  # restored after profiling
    # The engine still runs on the same target afterwards.
    prompts = prompts_of([5, 8], seed=41)
    results = target.generate_batch(inputs=prompts, generation_config=greedy_config(6), continuous_batching_config=small_cache(),
                                    assistant_model=fixture_draft())
    assert [r.generated_tokens for r in results.values()] == plain_greedy(target, prompts, 6)


def _curve(target, seconds_per_token: float, verification: str = "batched", attention: str | None = None) -> CostProfile:
    tokens = list(range(1, 65))
    param = next(target.parameters())
    return CostProfile(model=model_name(target), device=device_name(param.device), dtype=dtype_name(param.dtype), tokens=tokens,
                       target_seconds=[100.0 * (1 + seconds_per_token * (b - 1)) for b in tokens], verification=verification,
                       versions={"attention": attention or packed_attention(param.device)})


def test_a_profile_of_the_other_attention_is_not_read(target, tmp_path, monkeypatch):
    """A packed profile timed with transformers' dense masked attention is stored under another key than
    one timed with the CPU block-diagonal attention, and the engine (block-diagonal on this CPU) finds
    only the latter. Mutation run once: ``packed_key`` ignoring its ``attention`` argument finds the dense
    profile (the first assertion fails)."""
    from dspark_hf.batching.packed_profile import packed_verification

    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    assert packed_attention("cpu") == "block-diagonal"
    save_packed_profile(PackedCostProfile({1: _curve(target, 0.0, packed_verification(target), attention="dense")}))
    assert find_packed_profile(target) is None
    save_packed_profile(PackedCostProfile({1: _curve(target, 0.0, packed_verification(target))}))
    assert find_packed_profile(target).curves[1].versions["attention"] == "block-diagonal"


def test_batch_is_scheduled_on_the_packed_curve(target, tmp_path, monkeypatch):
    """A stored batch-1 curve on which no drafted slot pays, and a stored packed curve on which every
    slot pays: the batch verifies whole blocks, so it read the packed one (stored under the key of the
    engine's packed verification: weight-major float32 linears and block-diagonal attention on a CPU). The
    batch-1 curve is stored under the key of the engine's verification forwards, where the engine's policy looks
    for it since run ab (``tests/test_batched_alone.py``)."""
    from dspark_hf.batching.packed_profile import packed_verification

    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    save_profile(_curve(target, 10.0, packed_verification(target)))
    packed = PackedCostProfile({r: _curve(target, 0.0, packed_verification(target)) for r in (1, 2, 4)})
    save_packed_profile(packed)
    assert find_packed_profile(target) is not None
    draft = fixture_draft()
    prompts = prompts_of([5, 9, 12], seed=43)
    results = target.generate_batch(inputs=prompts, generation_config=greedy_config(12, HardwareAware(on_missing="error")),
                                    continuous_batching_config=small_cache(), assistant_model=draft)
    assert [r.generated_tokens for r in results.values()] == plain_greedy(target, prompts, 12)
    rounds = [s for t in draft.last_batch_telemetry.requests.values() for s in t.steps]
    assert rounds and max(s.verified for s in rounds) > 0


def test_missing_packed_profile_is_told_once_per_process(target, tmp_path, monkeypatch, capsys):
    """Without a stored packed profile each engine falls back to the batch-1 curve; the notice saying so is
    printed by the first engine of the process only (a program calling ``generate_batch`` in a loop made one
    manager, and one notice, per call). Mutation run once: the notice printed without the check of the told
    set -> two lines, the assertion fails."""
    from dspark_hf.batching import speculation
    from dspark_hf.batching.packed_profile import packed_verification

    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    monkeypatch.setattr(speculation, "_TOLD_NO_PACKED_PROFILE", set())
    save_profile(_curve(target, 0.0, packed_verification(target)))
    draft = fixture_draft()
    for _ in range(2):
        spec = speculation.Speculation(target, draft, greedy_config(4, HardwareAware(on_missing="error")))
        assert spec.packed_profile is None
        spec.close()
    assert capsys.readouterr().err.count("no packed cost profile") == 1
