"""Export to the released DeepSpec layout: every fixture survives export -> our loader unchanged.

For each released-format fixture: load it with our loader, export it in float32 ("keep" dtype), load the
export back with our loader; the config the loader builds, every tensor (bit-exact) and the reference
outputs (1e-5, as in test_fixture_exactness) must be the same. Also: the bf16 default, drafts that
share their target's embeddings (target required, its tensors written), the target's text config as
the base of config.json (Qwen3 and Gemma4), and one clear error for families with no released layout.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import FIXTURES_DIR, fixture_folders, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.cli import main as cli_main
from dspark_hf.models.dspark.config_for_target import draft_config_for_target
from dspark_hf.models.dspark.released_format import from_released_config
from dspark_hf.training.export import ExportError, export_deepspec
from test_fixture_exactness import compare_outputs, reproduce_outputs

FOLDERS = fixture_folders()


def tensor_names(path) -> set[str]:
    with safe_open(str(path), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_fixture_export_round_trip_float32(folder, tmp_path):
    draft = DSparkDraft.from_pretrained(folder, dtype=torch.float32).eval()
    export_deepspec(draft, tmp_path, dtype=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]

    original_cfg = json.loads((folder / "config.json").read_text())
    exported_cfg = json.loads((tmp_path / "config.json").read_text())
    for key in ("architectures", "model_type", "tie_word_embeddings", "layer_types", "dtype"):
        assert exported_cfg[key] == original_cfg[key], key
    assert "auto_map" not in exported_cfg
    assert from_released_config(exported_cfg).to_dict() == from_released_config(original_cfg).to_dict()

    assert tensor_names(tmp_path / "model.safetensors") == tensor_names(folder / "model.safetensors")
    expected, written = load_file(folder / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    for name, tensor in expected.items():
        assert written[name].dtype == tensor.dtype and torch.equal(written[name], tensor), name

    again = DSparkDraft.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ref = load_file(folder / "reference.safetensors")
    compare_outputs(reproduce_outputs(again, ref), ref, f"{folder.name} (exported and reloaded)")


def test_default_dtype_is_bfloat16(tmp_path):
    folder = FIXTURES_DIR / "qwen3_dspark_vanilla"
    draft = DSparkDraft.from_pretrained(folder, dtype=torch.float32)
    export_deepspec(draft, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    written, expected = load_file(tmp_path / "model.safetensors"), load_file(folder / "model.safetensors")
    assert {t.dtype for t in written.values()} == {torch.bfloat16}
    for name, tensor in expected.items():
        assert torch.equal(written[name], tensor.to(torch.bfloat16)), name
    assert DSparkDraft.from_pretrained(tmp_path, dtype=torch.bfloat16).dtype == torch.bfloat16


def block_logits(draft, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(1, 5, draft.fc.in_features, generator=gen)
    block = torch.full((1, draft.config.block_size), draft.config.mask_token_id)
    block[0, 0] = 7
    with torch.no_grad():
        return draft(input_ids=block, context_features=features).logits


def test_shared_embeddings_need_the_target_and_take_its_tensors(tmp_path):
    target = tiny_qwen3_target()
    draft = DSparkDraft(draft_config_for_target(target.config)).eval()
    with pytest.raises(ExportError, match="pass the target"):
        export_deepspec(draft, tmp_path / "none")
    export_deepspec(draft, tmp_path, target=target, dtype=None)

    written = load_file(tmp_path / "model.safetensors")
    assert torch.equal(written["embed_tokens.weight"], target.get_input_embeddings().weight)
    assert torch.equal(written["lm_head.weight"], target.get_output_embeddings().weight)
    assert set(written) == set(draft.state_dict())
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen3DSparkModel"] and cfg["model_type"] == "qwen3"
    assert cfg["max_window_layers"] == target.config.max_window_layers  # the target's text config is the base
    assert cfg["num_hidden_layers"] == draft.config.num_hidden_layers and cfg["num_target_layers"] == 8

    again = DSparkDraft.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert not again.config.embeddings_from_target
    draft.bind_target_embeddings(target)
    assert torch.equal(block_logits(again), block_logits(draft))


def test_gemma4_target_config_is_the_base(tmp_path):
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    folder = FIXTURES_DIR / "gemma4_dspark_vanilla"
    fixture_cfg = json.loads((folder / "config.json").read_text())
    torch.manual_seed(0)
    target = Gemma4ForCausalLM(Gemma4TextConfig(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, global_head_dim=32, attention_k_eq_v=True, num_global_key_value_heads=1,
        hidden_size_per_layer_input=0, final_logit_softcapping=30.0, max_position_embeddings=512, sliding_window=512,
        pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )).eval()
    draft = DSparkDraft.from_pretrained(folder, dtype=torch.float32)
    export_deepspec(draft, tmp_path, target=target, dtype=None)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "gemma4_text" and cfg["architectures"] == ["Gemma4DSparkModel"]
    # The target's sliding-attention shapes stay; the draft's global ones are what the loader reads.
    assert (cfg["head_dim"], cfg["num_key_value_heads"], cfg["global_head_dim"]) == (16, 2, 32)
    assert cfg["rope_parameters"]["sliding_attention"] == fixture_cfg["rope_parameters"]["sliding_attention"]
    assert cfg["layer_types"] == ["full_attention"] * 2
    assert from_released_config(cfg).to_dict() == from_released_config(fixture_cfg).to_dict()


def llama_draft():
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
                      num_key_value_heads=2)
    return DSparkDraft(draft_config_for_target(cfg, embeddings_from_target=False))


def test_family_without_released_layout_is_one_clear_error(tmp_path):
    with pytest.raises(ExportError, match=r"only for Qwen3 and Gemma4 drafts.*llama target.*save_pretrained"):
        export_deepspec(llama_draft(), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_cli_export_deepspec_and_error(tmp_path, capsys):
    folder = FIXTURES_DIR / "qwen3_dflash"
    out = tmp_path / "out"
    assert cli_main(["export", "--draft", str(folder), "--format", "deepspec", "--out", str(out), "--dtype", "float32"]) == 0
    written, expected = load_file(out / "model.safetensors"), load_file(folder / "model.safetensors")
    assert written.keys() == expected.keys() and all(torch.equal(written[k], expected[k]) for k in expected)

    llama = tmp_path / "llama_draft"
    llama_draft().save_pretrained(llama)
    capsys.readouterr()
    assert cli_main(["export", "--draft", str(llama), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dspark export: error:") and err.count("\n") == 0 and "only for Qwen3 and Gemma4" in err


def test_cli_export_with_target_for_a_shared_embedding_draft(tmp_path):
    target = tiny_qwen3_target()
    target.save_pretrained(tmp_path / "target")
    draft = DSparkDraft(draft_config_for_target(target.config)).eval()
    draft.save_pretrained(tmp_path / "draft")
    assert "embed_tokens.weight" not in tensor_names(tmp_path / "draft" / "model.safetensors")
    args = ["export", "--draft", str(tmp_path / "draft"), "--out", str(tmp_path / "out"), "--dtype", "keep"]
    assert cli_main(args) == 2  # no target: the shared embeddings cannot be written
    assert cli_main(args + ["--target", str(tmp_path / "target")]) == 0
    written = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(written["lm_head.weight"], target.lm_head.weight)
    draft.bind_target_embeddings(target)
    assert torch.equal(block_logits(DSparkDraft.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()), block_logits(draft))


def test_cli_export_dspark_format_is_save_pretrained(tmp_path):
    from transformers import AutoModel

    folder = FIXTURES_DIR / "gemma4_dspark_vanilla"
    assert cli_main(["export", "--draft", str(folder), "--format", "dspark", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "dspark"
    again = AutoModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    original = DSparkDraft.from_pretrained(folder, dtype=torch.float32).eval()
    assert torch.equal(block_logits(again), block_logits(original))
