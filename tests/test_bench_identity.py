"""The greedy identity check flags outputs that differ from plain generation, and only those."""

from __future__ import annotations

import torch
from transformers import GenerationConfig

from conftest import tiny_qwen3_target
from dspark_hf.benchmarks.identity import check_identity, compare_outputs
from dspark_hf.benchmarks.methods import Plain
from dspark_hf.benchmarks.report import build_report, markdown
from dspark_hf.benchmarks.session import Suite, run_suite


def test_compare_outputs():
    a = torch.tensor([[1, 2, 3, 4, 5]])
    assert compare_outputs(a, a.clone(), 2) == (True, None)
    assert compare_outputs(a, torch.tensor([[1, 2, 3, 9, 5]]), 2) == (False, 1)
    assert compare_outputs(a, torch.tensor([[1, 2, 3, 4]]), 2) == (False, None)
    mismatch = check_identity("gsm8k", 3, "m", a, torch.tensor([[1, 2, 3, 9, 5]]), 2)
    assert (mismatch.first_difference, mismatch.expected_tokens, mismatch.got_tokens) == (1, 3, 3)
    assert "gsm8k prompt 3 at new token 1" in mismatch.describe()


class BrokenPlain(Plain):
    """Plain generation with its last token deliberately changed."""

    def __init__(self):
        super().__init__(id="broken")

    def run(self, target, input_ids, generation_config):
        result = super().run(target, input_ids, generation_config)
        result.output = result.output.clone()
        result.output[0, -1] = (result.output[0, -1] + 1) % target.config.vocab_size
        return result


def test_a_broken_output_is_flagged_in_the_report():
    target = tiny_qwen3_target()
    prompts = [torch.randint(5, 300, (1, 6), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    suite = Suite("tiny", target, [Plain(id="plain-again"), BrokenPlain()], {"random": prompts})
    config = GenerationConfig(max_new_tokens=5, do_sample=False)
    result = run_suite(suite, config, repeats=2, warmup=0, progress=False)
    assert [(m.method, m.prompt_index, m.first_difference) for m in result.mismatches] == [("broken", 0, 4), ("broken", 1, 4)]
    report = build_report([result], settings={"max_new_tokens": 5, "temperature": 0.0, "repeats": 2}, machine={
        "device_name": "cpu", "threads": 1, "torch": "x", "transformers": "y"}, command="test", greedy=True)
    rows = {r["method"]: r for r in report["results"]}
    assert rows["broken"]["identical"] is False and rows["broken"]["mismatches"] == 2
    assert rows["plain-again"]["identical"] is True
    assert len(report["flags"]) == 2 and all(f.startswith("GREEDY MISMATCH: broken") for f in report["flags"])
    assert "**NO (2 of " in markdown(report)


def test_prompt_indices_count_from_first_index():
    """With ``--start 5`` the first measured prompt is prompt 5 of its file, in mismatches and results."""
    target = tiny_qwen3_target()
    prompts = [torch.randint(5, 300, (1, 6), generator=torch.Generator().manual_seed(0))]
    suite = Suite("tiny", target, [BrokenPlain()], {"random": prompts}, first_index=5)
    result = run_suite(suite, GenerationConfig(max_new_tokens=3, do_sample=False), warmup=0, progress=False)
    assert [m.prompt_index for m in result.mismatches] == [5] and {r.prompt_index for r in result.results} == {5}
