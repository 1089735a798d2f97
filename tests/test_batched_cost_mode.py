"""Cost mode of the batched engine (:mod:`dspark_hf.benchmarks.batched_cost_mode`, ``scripts/gpu_frontier.py``):
the scripted acceptance is exactly what the engine accepts, the scripted confidences are calibrated, and
the frontier run's outputs equal plain continuous batching.

Mutations run once each (the named test failed, then the change was reverted):

- ``ScriptedAcceptance.script`` counting every right slot instead of the leading ones
  (``if right: right_run += 1``): ``test_engine_accepts_exactly_the_scripted_runs`` fails;
- ``ScriptedAcceptance.right`` scripting a slot right when its draw is at or above its confidence
  (``>=`` for ``<``): ``test_scripted_confidences_are_calibrated`` fails, and so does
  ``test_engine_accepts_exactly_the_scripted_runs``.
"""

from __future__ import annotations

import torch

from batched_support import greedy_config, small_cache
from dspark_hf.benchmarks.batched_cost_mode import ScriptedAcceptance, greedy_continuations, scripted_frontier
from dspark_hf.benchmarks.cost_mode import random_draft_for, random_target

NEW = 20


def test_engine_accepts_exactly_the_scripted_runs():
    """Three requests, whole blocks verified: in every round each request accepts exactly the number of
    leading slots the script made right (unless ``max_new_tokens`` cut the round), and every output equals
    plain continuous batching's."""
    target = random_target("tiny")
    draft = random_draft_for(target)
    gen = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 384, (n,), generator=gen).tolist() for n in (12, 12, 12)]
    continuations = greedy_continuations(target, prompts, NEW + draft.config.block_size + 1)
    with ScriptedAcceptance(prompts, continuations, base=0.75, spread=1.0, seed=3) as script:
        results = target.generate_batch(inputs=prompts, generation_config=greedy_config(NEW, "fixed:7"),
                                        continuous_batching_config=small_cache(), assistant_model=draft)
    outputs = [r.generated_tokens for r in results.values()]
    assert outputs == [c[len(p) : len(p) + NEW] for p, c in zip(prompts, continuations)]
    telemetry = draft.last_batch_telemetry
    checked = 0
    for i, (request_id, record) in enumerate(telemetry.requests.items()):
        runs = script.scripted[i]
        assert len(runs) == len(record.steps)
        for run, step in zip(runs, record.steps):
            if step.emitted == step.accepted + 1:  # not cut by max_new_tokens
                assert step.accepted == min(step.verified, run), (request_id, run, step)
                checked += 1
    assert checked >= 6 and len({s.accepted for r in telemetry.requests.values() for s in r.steps}) >= 3


def test_scripted_confidences_are_calibrated():
    """Over 40,000 scripted positions, the share of slots scripted right is the mean scripted confidence
    (within 0.01), and within each confidence decile it is that decile's mean (within 0.03)."""
    prompts = [[i, 1, 2] for i in range(100)]
    script = ScriptedAcceptance(prompts, [p + [5] * 400 for p in prompts], base=0.7, spread=1.5, seed=1)
    confidence = torch.cat([c[:400] for c in script.confidence])
    right = torch.tensor([float(script.right(i, p)) for i in range(100) for p in range(400)], dtype=torch.float64)
    assert abs(right.mean() - confidence.mean()) < 0.01
    order = confidence.argsort()
    for part in order.chunk(10):
        assert abs(right[part].mean() - confidence[part].mean()) < 0.03


def test_frontier_run_on_a_tiny_shape(tmp_path, monkeypatch):
    """``scripted_frontier`` end to end (what scripts/gpu_frontier.py runs on a GPU): no output differs from
    plain continuous batching, every policy ran at every concurrency, and the packed profile covers them."""
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))  # the profiles of the random target go here
    report = scripted_frontier("tiny", concurrencies=(1, 2), policies=("fixed:3", "hardware"), max_new_tokens=8,
                               prompt_length=16, profile_repeats=1, log=lambda *a: None)
    assert report["mismatches"] == 0
    assert {(r["concurrency"], r["method"]) for r in report["rows"]} == {(c, m) for c in (1, 2) for m in ("plain", "fixed:3", "hardware")}
    assert sorted(int(r) for r in report["packed_profile"]["curves"]) == [1, 2]
    assert report["scripted_blocks"] > 0


def test_decisive_target_keeps_bf16_on_the_scripted_path(tmp_path, monkeypatch):
    """In bf16 a random target's near-tied logits let a multi-token verification and a one-token step pick
    different greedy tokens, after which the scripted continuation is off the target's path (on an H200 with
    the Qwen3-8B shape: tau 1.00 for every fixed length at C = 1). With :func:`make_decisive` the bf16 run
    accepts exactly what the script says, so its tau equals the float32 run's (the script's draws depend on
    prompt and position only), and no output differs from plain. Mutation run once: ``decisive=False`` in the
    bf16 run: tau 1.88 against 2.76 and 1 mismatch, fails."""
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    runs = {dtype: scripted_frontier("tiny", dtype=dtype, concurrencies=(2,), policies=("fixed:3",), max_new_tokens=48, prompt_length=32,
                                     profile_repeats=1, log=lambda *a: None, decisive=dtype == torch.bfloat16)
            for dtype in (torch.float32, torch.bfloat16)}
    tau = {dtype: next(r["tau"] for r in run["rows"] if r["method"] == "fixed:3") for dtype, run in runs.items()}
    assert runs[torch.bfloat16]["mismatches"] == 0 and runs[torch.float32]["mismatches"] == 0
    assert tau[torch.bfloat16] == tau[torch.float32] > 2.5
