"""DSpark and DFlash drafts as bench methods: labels, exact output, per-slot rows of the block's size,
calibration only where a confidence head exists."""

from __future__ import annotations

import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.benchmarks.methods import DSpark
from dspark_hf.benchmarks.report import summarise
from dspark_hf.benchmarks.session import Suite, run_suite


def test_dspark_and_dflash_rows():
    target = tiny_qwen3_target()
    vanilla = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    dflash = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dflash", dtype=torch.float32).eval()
    methods = [DSpark(vanilla, "vanilla", "whole"), DSpark(vanilla, "vanilla", "threshold:0.5"), DSpark(dflash, "dflash", "whole")]
    assert [m.id for m in methods] == ["dspark[vanilla]:whole", "dspark[vanilla]:threshold:0.5", "dflash[dflash]:whole"]
    prompts = [torch.randint(5, 300, (1, 7), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    result = run_suite(Suite("tiny", target, methods, {"random": prompts}), GenerationConfig(max_new_tokens=12, do_sample=False),
                       warmup=0, progress=False)
    assert result.mismatches == []
    rows = {r["method"]: r for r in summarise([result], greedy=True)}
    whole = rows["dspark[vanilla]:whole"]
    assert len(whole["per_slot_acceptance"]) == vanilla.config.block_size
    assert whole["rounds"] == whole["target_forwards"] - 2  # one prefill forward per prompt is not a round
    assert whole["calibration"]["raw"]["n"] == whole["verified"]  # every verified slot has a known outcome
    assert rows["dspark[vanilla]:threshold:0.5"]["verified_ratio"] <= 1.0
    assert rows["dflash[dflash]:whole"]["calibration"] is None
    assert rows["plain"]["tau"] == 1.0 and rows["plain"]["rounds"] == 0


def test_card_figures_from_a_report():
    from dspark_hf.benchmarks.report import card_figures

    report = {"machine": {"device_name": "cpu-X-1threads"}, "created": "2026-11-23T05:00:00Z", "results": [
        {"method": "plain", "kind": "plain", "dataset": "gsm8k", "tau": 1.0},
        {"method": "dspark[d]:whole", "kind": "dspark", "dataset": "gsm8k", "tau": 3.5, "acceptance_rate": 0.4,
         "speedup": {"median": 1.8}, "rounds": 12},
    ]}
    (figure,) = card_figures(report, "dspark[d]:whole")
    assert (figure.benchmark, figure.tau, figure.acceptance_rate, figure.speedup, figure.rounds) == ("gsm8k", 3.5, 0.4, 1.8, 12)
    assert figure.source == "dspark bench, cpu-X-1threads, 2026-11-23"


def test_one_off_measurements_are_made_before_any_timed_call(tmp_path, monkeypatch):
    """On a machine with nothing measured yet, the first call of a float32 target measures which row counts run
    weight-major (and a hardware-aware policy makes its cost profile): hundreds of target forwards. With no
    warm-up, the bench made them inside the first timed call, whose seconds and target-forward count included
    them (CI: ``target_forwards`` 301 for 3 prompts of 6 tokens). Here each is made once, before timing, and
    every timed call counts only its own forwards: one prefill per prompt plus one per round.
    Mutation run once: the ``method.prepare`` loop removed from ``run_suite`` -> this fails (the measurement's
    forwards land in the first prompt's count)."""
    from dspark_hf.benchmarks.methods import PlainOnDSparkKernels
    from dspark_hf.integration import weight_major

    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    monkeypatch.setattr(weight_major, "_MEMORY", {})
    monkeypatch.setattr(weight_major, "_COMPILED", {})
    measured = []
    real = weight_major.measure_weight_major_rows
    monkeypatch.setattr(weight_major, "measure_weight_major_rows", lambda target, **kw: measured.append(1) or real(target, **kw))
    target = tiny_qwen3_target()
    assert weight_major.wants_weight_major(target, None)  # else nothing here is measured and the test shows nothing
    draft = DSparkDraft.from_pretrained(FIXTURES_DIR / "qwen3_dspark_vanilla", dtype=torch.float32).eval()
    methods = [DSpark(draft, "vanilla", "whole"), DSpark(draft, "vanilla", "hardware"), PlainOnDSparkKernels()]
    prompts = [torch.randint(5, 300, (1, 7), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    result = run_suite(Suite("tiny", target, methods, {"random": prompts}), GenerationConfig(max_new_tokens=6, do_sample=False),
                       warmup=0, progress=False)
    assert measured == [1] and result.mismatches == []
    assert list((tmp_path / "profiles").glob("*.json"))  # the hardware policy's cost profile was made, not skipped
    rows = {r["method"]: r for r in summarise([result], greedy=True)}
    for method in ("dspark[vanilla]:whole", "dspark[vanilla]:hardware"):
        assert rows[method]["target_forwards"] == rows[method]["rounds"] + len(prompts), method
    assert rows["plain-kernels"]["target_forwards"] == rows["plain"]["target_forwards"]
