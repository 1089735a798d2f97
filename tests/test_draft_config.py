"""`draft_config_for_target` shapes a draft for any decoder-only target."""

import torch

from conftest import tiny_gemma3_target, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.models.dspark.config_for_target import draft_config_for_target, spread_layer_ids


def test_layer_spread_matches_released_drafts():
    assert spread_layer_ids(36) == [1, 9, 17, 25, 33]  # Qwen3-4B / 8B drafts
    assert spread_layer_ids(40) == [1, 10, 19, 28, 37]  # Qwen3-14B draft


def tiny_target(config_cls, model_cls):
    torch.manual_seed(0)
    config = config_cls(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=8,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return model_cls(config).eval()


def test_drafts_for_tiny_targets_generate_exactly():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    targets = (tiny_qwen3_target(), tiny_gemma3_target(), tiny_target(Qwen2Config, Qwen2ForCausalLM),
               tiny_target(LlamaConfig, LlamaForCausalLM))
    for target in targets:
        config = draft_config_for_target(target.config, num_hidden_layers=1)
        assert config.target_layer_ids == [1, 2, 3, 4, 5] and config.embeddings_from_target
        draft = DSparkDraft(config).eval()
        ids = torch.randint(5, 300, (1, 7), generator=torch.Generator().manual_seed(0))
        out = target.generate(ids, assistant_model=draft, max_new_tokens=20, do_sample=False)
        assert torch.equal(out, target.generate(ids, max_new_tokens=20, do_sample=False))
        assert torch.equal(draft.embed_tokens.weight, target.get_input_embeddings().weight)


def test_save_leaves_target_embeddings_out(tmp_path):
    target = tiny_qwen3_target()
    draft = DSparkDraft(draft_config_for_target(target.config, num_hidden_layers=1)).eval()
    draft.bind_target_embeddings(target)
    draft.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "embed_tokens.weight" not in keys and "lm_head.weight" not in keys and "fc.weight" in keys
    again = DSparkDraft.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 300, (1, 7), generator=torch.Generator().manual_seed(1))
    out = target.generate(ids, assistant_model=again, max_new_tokens=12, do_sample=False)
    assert torch.equal(out, target.generate(ids, max_new_tokens=12, do_sample=False))
    assert torch.equal(again.lm_head.weight, target.lm_head.weight)
