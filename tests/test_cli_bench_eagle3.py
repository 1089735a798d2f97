"""``dspark bench`` with an EAGLE-3 draft next to DSpark and DFlash drafts: loading, the draft's variant and
block (its chain length), confidence-free policies, the tau-ratio lines of the report, and (once
``generate()`` drives EAGLE-3 drafts) a three-draft run end to end."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import EVAL_DATASETS_DIR
from dspark_hf.benchmarks.methods import DSpark, draft_block_size, draft_variant
from dspark_hf.benchmarks.tau_ratios import tau_ratios
from dspark_hf.cli import main
from dspark_hf.cli.bench import expand_policies
from dspark_hf.models.dspark.config_for_target import draft_config_for_target
from dspark_hf.models.dspark.modeling_dspark import DSparkDraft
from dspark_hf.models.eagle3.config_for_target import eagle3_config_for_target
from dspark_hf.models.eagle3.modeling_eagle3 import Eagle3Draft


@pytest.fixture(scope="module")
def three_drafts(tmp_path_factory):
    """A tiny random 6-layer Llama with SmolLM2's tokenizer, and a DSpark, a DFlash and an EAGLE-3 draft
    for it, saved as folders (block 4, chain length 3)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from dspark_hf.bundled.target import default_target_dir

    root = tmp_path_factory.mktemp("three")
    tokenizer = AutoTokenizer.from_pretrained(default_target_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True)
    target = LlamaForCausalLM(cfg)
    target.save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    ids = [0, 1, 2, 3, 4]
    DSparkDraft(draft_config_for_target(cfg, block_size=4, markov_rank=4, target_layer_ids=ids,
                                        embeddings_from_target=False)).save_pretrained(root / "dspark")
    DSparkDraft(draft_config_for_target(cfg, block_size=4, markov_rank=0, target_layer_ids=ids,
                                        embeddings_from_target=False)).save_pretrained(root / "dflash")
    Eagle3Draft(eagle3_config_for_target(cfg, ttt_length=3, target_layer_ids=ids)).save_pretrained(root / "eagle3")
    return root


def _loaded(root):
    from dspark_hf.cli.bench import _load_drafts

    return _load_drafts([str(root / name) for name in ("dspark", "dflash", "eagle3")], None)


def test_an_eagle3_folder_loads_beside_dspark_and_dflash_with_its_variant_and_block(three_drafts):
    """Fails when EAGLE-3 drafts are not told apart (methods.py, ``draft_variant``:
    ``getattr(config, "ttt_length", None) is not None`` -> ``False``: no ``markov_rank`` to read)."""
    drafts = _loaded(three_drafts)
    assert list(drafts) == ["dspark", "dflash", "eagle3"] and isinstance(drafts["eagle3"], Eagle3Draft)
    assert [draft_variant(d) for d in drafts.values()] == ["dspark", "dflash", "eagle3"]
    assert draft_block_size(drafts["eagle3"]) == 3
    described = DSpark(drafts["eagle3"], "eagle3", "whole").describe()
    assert described["variant"] == "eagle3" and described["block_size"] == 3 and described["confidence_head"] is False
    assert described["id"] == "eagle3[eagle3]:whole"
    # --policies all: the fixed lengths follow the DSpark draft; with only an EAGLE-3 draft, its chain length
    assert "fixed:3" in expand_policies(["all"], drafts) and "fixed:2" in expand_policies(["all"], {"e": drafts["eagle3"]})
    assert "fixed:3" not in expand_policies(["all"], {"e": drafts["eagle3"]})


def test_a_bad_eagle3_config_is_one_line_before_the_target_loads(three_drafts, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(three_drafts / "eagle3", bad)
    config = json.loads((bad / "config.json").read_text())
    config["target_layer_ids"] = [0, 1, 2]
    (bad / "config.json").write_text(json.dumps(config))
    assert main(["bench", "--draft", str(bad), "--datasets-dir", str(EVAL_DATASETS_DIR), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "target_layer_ids is [0, 1, 2]" in err and "config.json" in err


def test_drafts_without_a_confidence_head_get_the_confidence_free_policies(three_drafts, monkeypatch):
    """The EAGLE-3 draft, like the DFlash one, is measured under the policies that do not read confidences
    (``threshold``/``survival`` dropped: they would repeat whole); the DSpark draft under all of them.

    Fails when every draft gets every policy (runner.py: ``has_confidences = has_confidence_head(draft)``
    -> ``has_confidences = True``)."""
    import dspark_hf.benchmarks.runner as runner

    class Stop(Exception):
        pass

    seen = {}

    def fake_run_suite(suite, *args, **kwargs):
        seen["methods"] = [m.id for m in suite.methods]
        raise Stop

    monkeypatch.setattr(runner, "run_suite", fake_run_suite)
    monkeypatch.setattr(runner, "encode_prompts", lambda tokenizer, prompts, device: [torch.tensor([[1, 2]])] * len(prompts))
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(three_drafts / "target")
    with pytest.raises(Stop):
        runner.bench_prompts(target, None, _loaded(three_drafts), {"x": ["hi"]}, policies=["whole", "threshold:0.5", "hardware"],
                             prompt_lookup_tokens=None, progress=False)
    assert seen["methods"] == ["dspark[dspark]:whole", "dspark[dspark]:threshold:0.5", "dspark[dspark]:hardware",
                               "dflash[dflash]:whole", "dflash[dflash]:hardware", "eagle3[eagle3]:whole", "eagle3[eagle3]:hardware"]


def _report(taus: dict[str, dict[str, float]]) -> dict:
    methods = [{"id": "plain", "kind": "plain"}] + [
        {"id": f"{v}[{v}]:whole", "kind": "dspark", "variant": v, "policy": "whole"} for v in taus
    ] + [{"id": "dspark[dspark]:hardware", "kind": "dspark", "variant": "dspark", "policy": "hardware"}]
    results = [{"suite": "s", "dataset": d, "method": f"{v}[{v}]:whole", "tau": t} for v, per in taus.items() for d, t in per.items()]
    results += [{"suite": "s", "dataset": d, "method": "dspark[dspark]:hardware", "tau": 9.0} for d in taus["dspark"]]
    return {"suites": [{"name": "s", "methods": methods}], "results": results}


def test_tau_ratio_lines_compare_dspark_with_eagle3_and_dflash_per_dataset():
    """Fails when the ratio is inverted (tau_ratios.py: ``mine / theirs`` -> ``theirs / mine``)."""
    report = _report({"dspark": {"gsm8k": 3.0, "all": 2.4}, "eagle3": {"gsm8k": 2.0, "all": 2.0}, "dflash": {"gsm8k": 2.5, "all": 1.6}})
    assert tau_ratios(report) == [
        {"suite": "s", "dataset": "gsm8k", "DSpark/EAGLE-3": 1.5, "DSpark/DFlash": 1.2},
        {"suite": "s", "dataset": "all", "DSpark/EAGLE-3": pytest.approx(1.2), "DSpark/DFlash": pytest.approx(1.5)},
    ]
    only_eagle3 = _report({"dspark": {"all": 3.0}, "eagle3": {"all": 2.0}})
    assert tau_ratios(only_eagle3) == [{"suite": "s", "dataset": "all", "DSpark/EAGLE-3": 1.5, "DSpark/DFlash": None}]
    assert tau_ratios(_report({"dspark": {"all": 3.0}})) == []  # nothing to compare with


def test_the_markdown_report_carries_the_tau_ratio_table():
    from dspark_hf.benchmarks.tau_ratios import markdown_section

    section = markdown_section(_report({"dspark": {"gsm8k": 3.0}, "eagle3": {"gsm8k": 2.0}}))
    assert "| suite | dataset | DSpark/EAGLE-3 |" in section and "| s | gsm8k | 1.50 |" in section
    assert "DSpark/DFlash" not in section
    assert markdown_section(_report({"dspark": {"gsm8k": 3.0}})) == ""


def _generate_drives_eagle3(root) -> bool:
    from transformers import AutoModelForCausalLM

    import dspark_hf  # noqa: F401
    from dspark_hf.errors import UnsupportedUsageError

    target = AutoModelForCausalLM.from_pretrained(root / "target").eval()
    draft = Eagle3Draft.from_pretrained(root / "eagle3").eval()
    try:
        target.generate(torch.tensor([[1, 2, 3]]), assistant_model=draft, max_new_tokens=2, do_sample=False)
    except UnsupportedUsageError:
        return False
    return True


def test_bench_measures_dspark_dflash_and_eagle3_drafts_side_by_side(three_drafts, tmp_path, capsys):
    """``dspark bench --draft DSPARK --draft DFLASH --draft EAGLE3``: every draft measured, outputs identical
    to plain generation, tau per dataset for each, and the DSpark/EAGLE-3 and DSpark/DFlash ratio table.
    Skipped while ``generate()`` refuses EAGLE-3 drafts."""
    if not _generate_drives_eagle3(three_drafts):
        pytest.skip("generate() does not drive EAGLE-3 drafts yet")
    torch.set_num_threads(1)
    args = ["bench", "--target", str(three_drafts / "target"), "--datasets-dir", str(EVAL_DATASETS_DIR), "--out", str(tmp_path),
            "--datasets", "gsm8k", "--limit", "1", "--max-new-tokens", "6", "--warmup", "0", "--baselines", "none",
            "--no-plots", "--dtype", "float32", "--policies", "whole,threshold:0.5"]
    for name in ("dspark", "dflash", "eagle3"):
        args += ["--draft", str(three_drafts / name)]
    assert main(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    taus = {r["method"]: r["tau"] for r in report["results"] if r["dataset"] == "gsm8k"}
    assert {"dspark[dspark]:whole", "dflash[dflash]:whole", "eagle3[eagle3]:whole"} <= set(taus)
    assert "eagle3[eagle3]:threshold:0.5" not in taus
    assert all(r["identical"] for r in report["results"])
    out = capsys.readouterr().out
    assert "DSpark/EAGLE-3" in out and "DSpark/DFlash" in out
