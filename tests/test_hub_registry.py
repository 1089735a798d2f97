"""The registry of published drafts, the family model cards in hub_cards/, the card generator and
``dspark hub list`` / ``dspark hub card`` (all in-process, no network)."""

from __future__ import annotations

import json
import re

import pytest
from huggingface_hub import ModelCard

from conftest import FIXTURES_DIR, REPO_ROOT
from dspark_hf.cli import main as cli_main
from dspark_hf.errors import DSparkError
from dspark_hf.hub import registry
from dspark_hf.hub.cards import MeasuredFigure, render_draft_card
from dspark_hf.models.dspark.released_format import dspark_config_from_dict as draft_config_from_dict
from dspark_hf.verification.policies import resolve_policy

REFERENCE_DOC = REPO_ROOT.parent / "shared" / "docs" / "dspark-reference.md"
CARDS_DIR = REPO_ROOT / "hub_cards"

EXPECTED_IDS = {
    "deepseek-ai/dspark_qwen3_4b_block7": "Qwen/Qwen3-4B",
    "deepseek-ai/dspark_qwen3_8b_block7": "Qwen/Qwen3-8B",
    "deepseek-ai/dspark_qwen3_14b_block7": "Qwen/Qwen3-14B",
    "deepseek-ai/dspark_gemma4_12b_block7": "google/gemma-4-12B-it",
    "deepseek-ai/dflash_qwen3_4b_block7": "Qwen/Qwen3-4B",
    "deepseek-ai/dflash_qwen3_8b_block7": "Qwen/Qwen3-8B",
    "deepseek-ai/dflash_qwen3_14b_block7": "Qwen/Qwen3-14B",
    "deepseek-ai/dflash_gemma4_12b_block7": "google/gemma-4-12B-it",
    "deepseek-ai/eagle3_qwen3_4b_ttt7": "Qwen/Qwen3-4B",
    "deepseek-ai/eagle3_qwen3_8b_ttt7": "Qwen/Qwen3-8B",
    "deepseek-ai/eagle3_qwen3_14b_ttt7": "Qwen/Qwen3-14B",
    "deepseek-ai/DeepSeek-V4-Flash-DSpark": "deepseek-ai/DeepSeek-V4-Flash-DSpark",
    "deepseek-ai/DeepSeek-V4-Pro-DSpark": "deepseek-ai/DeepSeek-V4-Pro-DSpark",
}


def test_registry_lists_every_published_draft_with_its_target():
    assert {d.repo_id: d.target for d in registry.PUBLISHED_DRAFTS} == EXPECTED_IDS
    for d in registry.PUBLISHED_DRAFTS:
        assert d.block_size == (5 if d.kind == "deepseek_v4" else 7)
        assert d.license
        resolve_policy(d.recommended_policy)  # a valid policy spec
        assert (d.kind in ("dflash", "eagle3")) == (d.recommended_policy == "whole")  # no confidence head: whole
    assert registry.lookup("DEEPSEEK-AI/DSPARK_QWEN3_4B_BLOCK7").repo_id == "deepseek-ai/dspark_qwen3_4b_block7"
    assert registry.lookup("someone/else") is None
    with pytest.raises(DSparkError, match="not a published DSpark draft"):
        registry.get("someone/else")


def _paper_table() -> dict[tuple[str, str], list[float]]:
    """(target, method) -> the nine tau values of the reference doc's section 6 table."""
    rows = {}
    for line in REFERENCE_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 11 and re.fullmatch(r"[\d.]+", cells[2]):
            rows[(cells[0], cells[1])] = [float(c) for c in cells[2:]]
    return rows


@pytest.mark.skipif(not REFERENCE_DOC.exists(), reason="shared reference doc not present")
def test_published_acceptance_numbers_match_the_paper_table():
    table = _paper_table()
    assert len(table) >= 5
    names = {"Qwen/Qwen3-4B": "Qwen3-4B", "Qwen/Qwen3-8B": "Qwen3-8B", "google/gemma-4-12B-it": "Gemma4-12B"}
    with_tau = [d for d in registry.PUBLISHED_DRAFTS if d.tau]
    methods = {"dspark": "DSpark", "dflash": "DFlash", "eagle3": "EAGLE-3"}
    assert len(with_tau) == 5
    for d in with_tau:
        assert list(d.tau.values()) == table[(names[d.target], methods[d.kind])]
        assert "Table 1" in d.tau_source
    # every paper row for a released draft is in the registry
    for (target, method), _ in table.items():
        assert any(d.tau and names.get(d.target) == target and methods[d.kind] == method for d in with_tau), (target, method)


@pytest.mark.parametrize("family", sorted({d.card for d in registry.PUBLISHED_DRAFTS}))
def test_family_card_metadata_usage_and_numbers(family):
    path = CARDS_DIR / family
    card = ModelCard.load(path)
    meta = card.data.to_dict()
    assert meta["library_name"] == "dspark_hf"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "mit"
    assert "speculative-decoding" in meta["tags"]
    members = [d for d in registry.PUBLISHED_DRAFTS if d.card == family]
    base = meta["base_model"] if isinstance(meta["base_model"], list) else [meta["base_model"]]
    for d in members:
        assert d.target in base
        assert d.repo_id in card.text
        assert f"| {d.recommended_policy} |" in card.text
        for value in d.tau.values():
            assert f"{value:.2f}" in card.text
    assert "```python" in card.text
    assert "Source: DSpark paper" in card.text


def test_generated_card_carries_measured_figures_and_metadata():
    cfg = draft_config_from_dict(json.loads((FIXTURES_DIR / "qwen3_dspark_gated" / "config.json").read_text()), "fixture")
    text = render_draft_card(
        cfg, repo_id="me/my_draft", base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        figures=[MeasuredFigure("gsm8k", 3.4567, 0.41, 1.7, 120, "dspark bench (2-core CPU)"),
                 {"benchmark": "mt-bench", "tau": 2.5}],
    )
    card = ModelCard(text)
    assert card.data.library_name == "dspark_hf"
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.pipeline_tag == "text-generation"
    assert "dspark" in card.data.tags and "dflash" not in card.data.tags
    assert "| gsm8k | 3.46 | 0.410 | 1.70 | 120 | dspark bench (2-core CPU) |" in text
    assert "| mt-bench | 2.50 | - | - | - | - |" in text
    assert 'DSparkDraft.from_pretrained("me/my_draft")' in text
    assert "gated sequential (Markov) head of rank 16" in text
    empty = render_draft_card(cfg, repo_id="me/x", base_model=None)
    assert "No figures were measured" in empty


def test_cli_hub_list_and_card(tmp_path, capsys):
    assert cli_main(["hub", "list"]) == 0
    out = capsys.readouterr().out
    for repo_id, target in EXPECTED_IDS.items():
        assert re.search(rf"^{re.escape(repo_id)}\s.*{re.escape(target)}", out, re.M)
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps([{"benchmark": "alpaca", "tau": 3.0, "acceptance_rate": 0.33, "source": "test"}]))
    output = tmp_path / "README.md"
    code = cli_main(["hub", "card", str(FIXTURES_DIR / "qwen3_dflash"), "--repo-id", "me/dflash", "--base-model",
                     "Qwen/Qwen3-4B", "--figures", str(figures), "-o", str(output)])
    assert code == 0
    text = output.read_text()
    assert "| alpaca | 3.00 | 0.330 |" in text and "DFlash baseline" in text and "- dflash" in text
    assert cli_main(["hub", "card", str(tmp_path / "missing"), "--repo-id", "a/b", "--base-model", "c/d"]) == 2
    assert "does not exist" in capsys.readouterr().err
