"""``dspark bench`` in shards: per-prompt records (``runs.jsonl.gz``), ``--merge`` rebuilding the report
of every prompt from them, its one-line refusals, and ``--dflash-policies`` (policies for drafts without
a confidence head)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import EVAL_DATASETS_DIR
from dspark_hf.benchmarks.prompt_runs import RUNS_FILE, read_runs
from dspark_hf.cli import main
from test_cli_bench import TOP_KEYS, tiny_target_dir  # noqa: F401 (a fixture)

# deterministic on a given machine: everything but the timings
COUNTED = ("prompts", "new_tokens", "target_forwards", "rounds", "drafted", "verified", "accepted", "emitted", "tau",
           "acceptance_rate", "verified_ratio", "per_slot_acceptance", "per_slot_conditional", "identical", "mismatches")


def _bench(target, out, *args, draft="random"):
    return main(["bench", "--target", str(target), "--draft", str(draft), "--datasets-dir", str(EVAL_DATASETS_DIR),
                 "--datasets", "gsm8k,humaneval", "--policies", "whole,fixed:2,threshold:0.5", "--max-new-tokens", "6",
                 "--warmup", "0", "--no-plots", "--out", str(out), *args])


@pytest.fixture(scope="module")
def shards(tiny_target_dir, tmp_path_factory):  # noqa: F811
    """One run over prompts 0-2 of each set and two shards (0-1, 2), all with the same saved random
    draft (a fresh ``random`` draft per run would draw other weights, hence other confidences)."""
    from transformers import AutoModelForCausalLM

    from dspark_hf.loading import load_draft

    root = tmp_path_factory.mktemp("shards")
    torch.manual_seed(0)
    load_draft("random", AutoModelForCausalLM.from_pretrained(tiny_target_dir)).save_pretrained(root / "random")
    assert _bench(tiny_target_dir, root / "whole_run", "--limit", "3", draft=root / "random") == 0
    assert _bench(tiny_target_dir, root / "a", "--limit", "2", draft=root / "random") == 0
    assert _bench(tiny_target_dir, root / "b", "--start", "2", "--limit", "1", draft=root / "random") == 0
    return root


def _rows(report):
    return {(r["dataset"], r["method"]): r for r in report["results"]}


def test_runs_file_holds_every_prompt_and_method(shards):
    report = json.loads((shards / "a" / "bench.json").read_text())
    runs = read_runs(shards / "a" / RUNS_FILE)
    methods = [m["id"] for m in report["suites"][0]["methods"]]
    assert len(runs) == 2 * 2 * len(methods)  # 2 datasets x 2 prompts x methods (plain included)
    assert {(r["dataset"], r["prompt_index"]) for r in runs} == {(d, i) for d in ("gsm8k", "humaneval") for i in (0, 1)}
    assert report["files"]["runs"].endswith(RUNS_FILE) and "prompt_runs" not in report
    dspark = [r for r in runs if r["method"] == "dspark[random]:whole"]
    assert all(r["new_tokens"] == 6 and r["steps"] and r["steps"][0]["confidences"] for r in dspark)


def test_merge_equals_one_run_over_every_prompt(shards):
    assert main(["bench", "--merge", str(shards / "a"), str(shards / "b"), "--out", str(shards / "merged"), "--no-plots"]) == 0
    merged = json.loads((shards / "merged" / "bench.json").read_text())
    single = json.loads((shards / "whole_run" / "bench.json").read_text())
    assert set(merged) == TOP_KEYS | {"policy_comparison"}
    assert merged["settings"]["start"] == 0 and merged["settings"]["limit"] == 3
    assert [s["start"] for s in merged["settings"]["shards"]] == [0, 2]
    assert merged["suites"] == single["suites"]
    m, s = _rows(merged), _rows(single)
    assert m.keys() == s.keys()
    for key in m:
        for field in COUNTED:
            assert m[key][field] == s[key][field], (key, field)
        assert m[key]["tokens_per_second"]["n"] == s[key]["tokens_per_second"]["n"]
    # the merged timings are the shards' own: seconds add up, per dataset
    a, b = (_rows(json.loads((shards / x / "bench.json").read_text())) for x in ("a", "b"))
    for key in m:
        if key[0] != "all":
            assert m[key]["seconds"] == pytest.approx(a[key]["seconds"] + b[key]["seconds"], rel=1e-12)
    calib_m = m[("all", "dspark[random]:whole")]["calibration"]["raw"]
    calib_s = s[("all", "dspark[random]:whole")]["calibration"]["raw"]
    assert calib_m["n"] == calib_s["n"] > 0
    # the same draft on the same prompts: the same confidences, whichever process measured them
    assert calib_m["ece"] == pytest.approx(calib_s["ece"], abs=1e-9) and calib_m["auroc"] == pytest.approx(calib_s["auroc"], abs=1e-9)
    assert len(read_runs(shards / "merged" / RUNS_FILE)) == len(read_runs(shards / "a" / RUNS_FILE)) + len(read_runs(shards / "b" / RUNS_FILE))


@pytest.mark.parametrize("case, message", [
    ("overlap", "both measured gsm8k prompt 0"),
    ("settings", "setting max_new_tokens is 5"),
    ("missing", "bench.json not found"),
    ("one", "--merge takes at least two folders"),
])
def test_merge_refusals_are_one_line(shards, tiny_target_dir, tmp_path, capsys, case, message):  # noqa: F811
    if case == "overlap":
        folders = [shards / "a", shards / "whole_run"]
    elif case == "settings":
        assert _bench(tiny_target_dir, tmp_path / "c", "--start", "3", "--limit", "1", "--max-new-tokens", "5") == 0
        capsys.readouterr()
        folders = [shards / "a", tmp_path / "c"]
    elif case == "missing":
        folders = [shards / "a", tmp_path / "nothing"]
    else:
        folders = [shards / "a"]
    code = main(["bench", "--merge", *map(str, folders), "--out", str(tmp_path / "out"), "--no-plots"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out" / "bench.json").exists()


def test_dflash_drafts_skip_policies_that_read_confidences(tiny_target_dir):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dspark_hf.benchmarks.cost_mode import random_draft_for
    from dspark_hf.benchmarks.runner import bench_prompts

    target = AutoModelForCausalLM.from_pretrained(tiny_target_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_target_dir)
    dspark, dflash = random_draft_for(target, block_size=4), random_draft_for(target, block_size=4, markov_rank=0, seed=1)
    assert dflash.confidence_head is None and dspark.confidence_head is not None
    policies = ["whole", "fixed:2", "threshold:0.5", "survival:0.5", "online"]
    drafts = {"d": dspark, "f": dflash}
    prompts = {"one": ["Count to three."]}
    kwargs = dict(max_new_tokens=4, warmup=0, progress=False, prompt_lookup_tokens=None)
    with torch.no_grad():
        default = bench_prompts(target, tokenizer, drafts, prompts, policies=policies, **kwargs)
        chosen = bench_prompts(target, tokenizer, drafts, prompts, policies=policies, dflash_policies=["whole", "online"], **kwargs)
    ids = [m["id"] for m in default["suites"][0]["methods"]]
    assert ids == ["plain", *(f"dspark[d]:{p}" for p in policies), "dflash[f]:whole", "dflash[f]:fixed:2", "dflash[f]:online"]
    assert [m["id"] for m in chosen["suites"][0]["methods"]][-2:] == ["dflash[f]:whole", "dflash[f]:online"]
    assert chosen["settings"]["dflash_policies"] == ["whole", "online"] and default["settings"]["dflash_policies"] is None
    assert all(r["identical"] for r in default["results"] + chosen["results"])


def test_merge_carries_each_suites_mismatches(shards, tmp_path):
    """A mismatch recorded by a shard reaches the merged report under its own suite only, and fails
    that method's identity; one of another suite (same method id) is not pinned on this one."""
    import shutil

    b = tmp_path / "b"
    shutil.copytree(shards / "b", b)
    report = json.loads((b / "bench.json").read_text())
    suite = report["suites"][0]["name"]
    bad = {"suite": suite, "dataset": "gsm8k", "prompt_index": 2, "method": "prompt-lookup:10",
           "first_difference": 3, "expected_tokens": 6, "got_tokens": 6}
    report["mismatches"] = [bad, {**bad, "suite": "another target (baseline pair)"}]
    (b / "bench.json").write_text(json.dumps(report))
    assert main(["bench", "--merge", str(shards / "a"), str(b), "--out", str(tmp_path / "merged"), "--no-plots"]) == 3
    merged = json.loads((tmp_path / "merged" / "bench.json").read_text())
    assert merged["mismatches"] == [bad] and len(merged["flags"]) == 1
    rows = _rows(merged)
    assert rows[("gsm8k", "prompt-lookup:10")]["identical"] is False and rows[("gsm8k", "prompt-lookup:10")]["mismatches"] == 1
    assert rows[("humaneval", "prompt-lookup:10")]["identical"] is True


def test_confidence_free_asks_the_policy():
    from dspark_hf.benchmarks.runner import confidence_free

    specs = ["whole", "threshold", "threshold:0.5", "survival", "survival:0.3", "fixed:2", "hardware", "hardware:whole", "online"]
    assert confidence_free(specs) == ["whole", "fixed:2", "hardware", "hardware:whole", "online"]
