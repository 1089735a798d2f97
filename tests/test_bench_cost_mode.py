"""Cost mode: a draft forced to accept exactly L tokens gives tau = L + 1 in every round, the output
stays identical to plain generation, and the real draft forward still runs."""

from __future__ import annotations

import pytest
import torch

from dspark_hf.benchmarks import cost_mode
from dspark_hf.benchmarks.runner import bench_cost

LENGTHS = [0, 3, 7]
NEW_TOKENS = 17  # 1 (prefill) + 16, and 16 is a multiple of L + 1 for every L above


@pytest.fixture(scope="module")
def cost_report():
    return bench_cost(target_shape="tiny", lengths=LENGTHS, policies=["fixed:L", "whole"], prompt_length=8, prompts=2,
                      max_new_tokens=NEW_TOKENS, repeats=1, warmup=0, progress=False)


def test_tau_is_exactly_L_plus_1(cost_report):
    rows = cost_report["cost"]["results"]
    assert [(r["policy"], r["length"]) for r in rows] == [("fixed:L", L) for L in LENGTHS] + [("whole", L) for L in LENGTHS]
    for r in rows:
        assert r["tau"] == r["tau_all_rounds"] == r["length"] + 1 == r["ideal_speedup"]
        assert r["tau_exact"] and r["identical"]
        assert r["rounds"] == 2 * 16 // (r["length"] + 1)
        assert r["speedup"]["median"] > 0
        if r["policy"] == "fixed:L":
            assert r["verified_ratio"] == pytest.approx(r["length"] / 7)
        else:  # whole blocks, except where the token budget cuts the last rounds short
            assert min(r["length"] / 7, 0.5) < r["verified_ratio"] <= 1.0
    assert cost_report["flags"] == [] and cost_report["mismatches"] == []


def test_forced_rounds_step_by_step():
    target = cost_mode.random_target("tiny")
    draft = cost_mode.random_draft_for(target, block_size=5)
    calls = []
    real_forward = draft.forward
    draft.forward = lambda *a, **k: (calls.append(1), real_forward(*a, **k))[1]
    forced = cost_mode.ForcedProposals(draft).install()
    ids = cost_mode.random_prompts(target.config.vocab_size, 1, 9, seed=3)
    from dspark_hf.benchmarks.runner import generation_config

    config = generation_config(13)
    cost_mode.precompute_continuations(target, ids, config, forced)
    method = cost_mode.ForcedDSpark(draft, "random", forced, 2, "whole")
    run = method.run(target, ids[0], config)
    plain = target.generate(ids[0], max_new_tokens=13, do_sample=False)
    assert torch.equal(run.output, plain)
    # the last round may verify only what fits in the token budget
    assert [(s.verified, s.accepted, s.emitted) for s in run.steps] == [(5, 2, 3)] * 3 + [(2, 2, 3)]
    assert len(calls) == 4  # the real draft forward ran every round
    forced.remove()
    assert draft.forward.__name__ == "<lambda>"  # only the wrapper installed by the test is left


def test_named_shapes():
    cfg = cost_mode.shape_config("qwen3-8b")
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.head_dim, cfg.vocab_size) == (4096, 12288, 36, 32, 8, 128, 151936)
    assert cfg.eos_token_id is None
    from dspark_hf.errors import UnsupportedUsageError

    with pytest.raises(UnsupportedUsageError, match="qwen3-8b"):
        cost_mode.shape_config("llama-70b")


def test_profiler_writes_operator_tables(tmp_path):
    report = bench_cost(target_shape="tiny", lengths=[2], prompt_length=6, prompts=1, max_new_tokens=7, repeats=1,
                        warmup=0, profile_dir=tmp_path, progress=False)
    tables = report["cost"]["profiles"]
    assert len(tables) == 2  # plain and the forced method
    text = (tmp_path / tables[1].split("/")[-1]).read_text()
    assert "forced L=2" in text and "Self CPU" in text


def test_a_last_round_cut_by_the_budget_is_left_out_of_tau():
    report = bench_cost(target_shape="tiny", lengths=[3], prompt_length=6, prompts=1, max_new_tokens=7, repeats=1,
                        warmup=0, progress=False)
    (row,) = report["cost"]["results"]
    # 6 tokens after the prefill: one round of 4, then a round cut to 2
    assert (row["tau"], row["tau_all_rounds"], row["rounds"], row["tau_exact"]) == (4.0, 3.0, 2, True)
