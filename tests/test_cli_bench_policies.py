"""``dspark bench --policies all`` and ``--start``: the expanded policy list, the prompts measured, and an
end-to-end run on a tiny random target and draft that writes ``policy_comparison`` with exact outputs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import EVAL_DATASETS_DIR
from dspark_hf.benchmarks.prompt_sets import load_prompt_set
from dspark_hf.cli import main
from dspark_hf.cli.bench import expand_policies
from test_cli_bench import TOP_KEYS, tiny_target_dir  # noqa: F401 (a fixture)

ALL_7 = ["whole", "fixed:1", "fixed:2", "fixed:3", "fixed:4", "fixed:5", "fixed:6", "threshold:0.5", "survival:0.5", "hardware", "online"]


def _draft(block_size, markov_rank=1):
    return SimpleNamespace(config=SimpleNamespace(block_size=block_size, markov_rank=markov_rank))


def test_all_expands_for_the_first_dspark_draft():
    assert expand_policies(["all"], {"d": _draft(7)}) == ALL_7
    # a DFlash draft (markov_rank 0) first: the block size is the first DSpark draft's
    assert expand_policies(["all"], {"dflash": _draft(3, 0), "d": _draft(4)})[:5] == ["whole", "fixed:1", "fixed:2", "fixed:3", "threshold:0.5"]
    assert expand_policies(["all"], {"dflash": _draft(3, 0)})[:4] == ["whole", "fixed:1", "fixed:2", "threshold:0.5"]
    # mixed with other specs, whole first, no duplicates
    assert expand_policies(["hardware:whole", "all", "fixed:2"], {"d": _draft(4)}) == [
        "whole", "hardware:whole", "fixed:1", "fixed:2", "fixed:3", "threshold:0.5", "survival:0.5", "hardware", "online"]


def test_start_picks_prompts_from_that_index():
    lines = (EVAL_DATASETS_DIR / "gsm8k.jsonl").read_text().splitlines()
    name, prompts = load_prompt_set("gsm8k", 2, str(EVAL_DATASETS_DIR), start=3)
    assert name == "gsm8k" and prompts == [json.loads(lines[i])["turns"][0] for i in (3, 4)]


def test_cli_passes_all_and_start_to_the_measurement(tiny_target_dir, tmp_path, monkeypatch):  # noqa: F811
    import dspark_hf.benchmarks.runner as runner

    seen = {}

    class Stop(Exception):
        pass

    def fake_bench_prompts(target, tokenizer, drafts, prompt_sets, **kwargs):
        seen.update(prompt_sets=prompt_sets, **kwargs)
        raise Stop

    monkeypatch.setattr(runner, "bench_prompts", fake_bench_prompts)
    with pytest.raises(Stop):
        main(["bench", "--target", str(tiny_target_dir), "--draft", "random", "--datasets-dir", str(EVAL_DATASETS_DIR),
              "--datasets", "humaneval", "--start", "5", "--limit", "2", "--policies", "all", "--out", str(tmp_path)])
    lines = (EVAL_DATASETS_DIR / "humaneval.jsonl").read_text().splitlines()
    assert seen["prompt_sets"] == {"humaneval": [json.loads(lines[i])["turns"][0] for i in (5, 6)]}
    assert seen["start"] == 5 and seen["policies"] == ALL_7  # the random draft has block size 7


def test_cost_mode_refuses_all(tmp_path, capsys):
    code = main(["bench", "--cost-mode", "--policies", "all", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--policies all is for prompt mode" in err and len(err.splitlines()) == 1


def test_bench_policies_all_end_to_end(tiny_target_dir, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "cache"))  # "hardware" profiles the tiny target here
    out = tmp_path / "out"
    code = main(["bench", "--target", str(tiny_target_dir), "--draft", "random", "--datasets-dir", str(EVAL_DATASETS_DIR),
                 "--datasets", "gsm8k,humaneval", "--policies", "all", "--limit", "1", "--start", "1", "--max-new-tokens", "8",
                 "--baselines", "none", "--no-plots", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    assert set(report) == TOP_KEYS | {"policy_comparison"} and report["settings"]["start"] == 1
    assert [m["policy"] for m in report["suites"][0]["methods"][1:]] == ALL_7
    assert report["mismatches"] == [] and all(r["identical"] is True for r in report["results"])
    assert all(r["new_tokens"] == 8 for r in report["results"] if r["dataset"] != "all")
    (entry,) = report["policy_comparison"]
    assert entry["draft"] == "random" and entry["judged_datasets"] == ["gsm8k", "humaneval"]
    assert set(entry["datasets"]) == {"gsm8k", "humaneval", "all"}
    for dataset, d in entry["datasets"].items():
        fixed = {s: p["tokens_per_second"]["aggregate"] for s, p in d["policies"].items() if s.startswith("fixed:")}
        assert d["best_fixed"] == max(fixed, key=fixed.get) and d["policies"][d["best_fixed"]]["ratio_to_best_fixed"] == 1.0
    assert set(entry["adaptive"]) == {"whole", "threshold:0.5", "survival:0.5", "hardware", "online"}
    for a in entry["adaptive"].values():
        ratios = [a["ratio_to_best_fixed"][d] for d in ("gsm8k", "humaneval")]
        assert a["goal_met"] == (min(ratios) >= 1.0 and max(ratios) > 1.0)
    md = (out / "bench.md").read_text()
    assert "## Verification policies against the best fixed length" in md and "| hardware |" in md
    assert "goal met" in capsys.readouterr().out


def test_plot_colours_stay_distinct_past_ten_methods():
    from dspark_hf.benchmarks.plots import method_colours

    for count in (3, 13, 25):
        colours = method_colours(count)
        assert len(colours) == count and len(set(colours)) == count
