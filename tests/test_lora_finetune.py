"""LoRA fine-tuning of a draft (peft): training changes only the adapter, the adapter round-trips
through disk exactly, merging gives the unmerged outputs, and generation with the adapted draft stays
lossless. Tiny random targets and the released-format fixture drafts; float32 throughout. The packing
and losses it trains with are the trainer's own (tests/test_training_packing.py, test_training_losses.py).
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GenerationConfig

from conftest import FIXTURES_DIR, tiny_gemma3_target, tiny_qwen3_target
from dspark_hf import DSparkDraft
from dspark_hf.training.data import DataError, Example, load_examples
from dspark_hf.training.lora import (
    LoraError, attach_adapter, load_adapter, lora_config, lora_training_step, merge_adapter, save_adapter,
)
from dspark_hf.training.target_outputs import OnlineTargetOutputs

MERGE_ATOL = 1e-5  # merged W + s*B@A against W x + s*B(A x), float32
TARGETS = {"qwen3_dspark_vanilla": tiny_qwen3_target, "qwen3_dspark_rnn": tiny_qwen3_target,
           "qwen3_dspark_gated": tiny_qwen3_target, "gemma4_dspark_vanilla": tiny_gemma3_target}


def fixture_draft(name: str) -> DSparkDraft:
    return DSparkDraft.from_pretrained(FIXTURES_DIR / name, dtype=torch.float32).eval()


def random_examples(count: int = 2, length: int = 40, seed: int = 0) -> list[Example]:
    gen = torch.Generator().manual_seed(seed)
    return [Example(torch.randint(5, 300, (length,), generator=gen).tolist(), [0] * 10 + [1] * (length - 10)) for _ in range(count)]


def block_logits(draft: DSparkDraft, seed: int = 1) -> torch.Tensor:
    """Base logits and confidence logits of one block after 12 random context rows."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(1, 12, draft.fc.in_features, generator=gen)
    block = torch.full((1, draft.config.block_size), draft.config.mask_token_id)
    block[0, 0] = 11
    with torch.no_grad():
        out = draft(input_ids=block, context_features=features)
        conf = draft.confidence_logits(out.last_hidden_state, torch.full_like(block, 11))
    return out.logits if conf is None else torch.cat([out.logits.flatten(), conf.flatten()])


def train_adapter(draft, target, steps: int = 4, dropout: float = 0.1):
    peft_model = attach_adapter(draft, lora_config(r=4, alpha=8, dropout=dropout))
    model = peft_model.get_base_model()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    outputs = OnlineTargetOutputs(target, model.config.target_layer_ids)
    gen = torch.Generator().manual_seed(0)
    history = [lora_training_step(model, target, outputs, random_examples(), optimizer, num_anchors=8, generator=gen)
               for _ in range(steps)]
    outputs.close()
    return peft_model, history


def test_training_changes_outputs_and_only_the_adapter():
    target = tiny_qwen3_target()
    draft = fixture_draft("qwen3_dspark_vanilla")
    before_logits = block_logits(draft)
    before_state = {k: v.clone() for k, v in draft.state_dict().items()}
    peft_model = attach_adapter(draft, lora_config(r=4, alpha=8))
    assert torch.equal(block_logits(peft_model.get_base_model()), before_logits)  # B starts at zero
    peft_model, history = train_adapter(fixture_draft("qwen3_dspark_vanilla"), target, steps=6)
    model = peft_model.get_base_model()
    assert history[-1]["loss"] < history[0]["loss"]
    assert (block_logits(model) - before_logits).abs().max() > 1e-3
    # Base weights untouched: every non-LoRA tensor equals the original (peft names it *.base_layer.*).
    for name, tensor in model.state_dict().items():
        if "lora_" in name:
            continue
        original = before_state[name.replace(".base_layer.", ".")]
        assert torch.equal(tensor, original), name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_target_modules_choose_what_is_adapted():
    draft = fixture_draft("qwen3_dspark_gated")  # its sequential head also has a gate_proj
    peft_model = attach_adapter(draft, lora_config(r=2, target_modules=["gate_proj", "fc"]))
    adapted = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.get_base_model().named_modules() if n.endswith("lora_A")})
    assert adapted == ["fc", "layers.0.mlp.gate_proj", "layers.1.mlp.gate_proj"]
    with pytest.raises(LoraError, match="Unknown LoRA target modules"):
        lora_config(target_modules=["lm_head"])
    with pytest.raises(LoraError, match="Cannot attach"):  # Gemma4 drafts have no v_proj (values are keys)
        attach_adapter(fixture_draft("gemma4_dspark_vanilla"), lora_config(r=2, target_modules=["v_proj"]))


@pytest.mark.parametrize("name", ["qwen3_dspark_vanilla", "gemma4_dspark_vanilla"])
def test_save_load_exact_and_merge_matches(name, tmp_path):
    target = TARGETS[name]()
    peft_model, _ = train_adapter(fixture_draft(name), target, steps=2)
    adapted = block_logits(peft_model.get_base_model())
    save_adapter(peft_model, tmp_path)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert not list(tmp_path.glob("*.bin"))

    loaded = load_adapter(fixture_draft(name), tmp_path)
    assert torch.equal(block_logits(loaded.get_base_model()), adapted)

    again = load_adapter(fixture_draft(name), tmp_path, trainable=True)  # to continue training
    trainable = {n for n, p in again.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)

    merged = merge_adapter(loaded)
    assert type(merged) is DSparkDraft
    assert not any("lora_" in k for k in merged.state_dict())
    torch.testing.assert_close(block_logits(merged), adapted, atol=MERGE_ATOL, rtol=0)
    assert set(merged.state_dict()) == set(fixture_draft(name).state_dict())


def test_a_step_without_any_anchor_is_refused():
    target = tiny_qwen3_target()
    model = attach_adapter(fixture_draft("qwen3_dspark_vanilla"), lora_config(r=2)).get_base_model()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    outputs = OnlineTargetOutputs(target, model.config.target_layer_ids)
    lonely = [Example(list(range(5, 15)), [0, 1] * 5)]  # no two consecutive answer tokens
    with pytest.raises(LoraError, match="two consecutive answer tokens"):
        lora_training_step(model, target, outputs, lonely, optimizer)
    outputs.close()


def test_export_refuses_an_unmerged_adapter(tmp_path):
    from dspark_hf.training.export import ExportError, export_deepspec

    peft_model = attach_adapter(fixture_draft("qwen3_dspark_vanilla"), lora_config(r=2))
    with pytest.raises(ExportError, match="merge it first"):
        export_deepspec(peft_model.get_base_model(), tmp_path)


@pytest.mark.parametrize("name", ["qwen3_dspark_rnn", "gemma4_dspark_vanilla"])
def test_generation_with_adapted_draft_is_lossless(name):
    target = TARGETS[name]()
    peft_model, _ = train_adapter(fixture_draft(name), target, steps=2)
    config = GenerationConfig(max_new_tokens=24, do_sample=False)
    ids = torch.randint(5, 300, (1, 11), generator=torch.Generator().manual_seed(0))
    plain = target.generate(ids, generation_config=config)
    draft = peft_model.get_base_model()
    assert torch.equal(target.generate(ids, assistant_model=draft, generation_config=config), plain)
    assert draft.last_telemetry.new_tokens == 24
    merged = merge_adapter(peft_model)
    assert torch.equal(target.generate(ids, assistant_model=merged, generation_config=config), plain)


# -- data and the command line ----------------------------------------------------------------------

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> <|sep|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def tiny_tokenizer():
    """A word-level tokenizer over w0..w299 with a chat template (ids 0..306 < the tiny target's 384)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|sep|>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + [f"w{i}" for i in range(300)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<|end|>", unk_token="<unk>")
    tok.chat_template = TEMPLATE
    return tok


def test_chat_records_train_on_assistant_turns_only(tmp_path):
    """Answer tokens up to the end-of-turn token (not the separator the template adds after it)."""
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "w1 w2", "answer": "w3 w4 w5"},
        {"messages": [{"role": "user", "content": "w6"}, {"role": "assistant", "content": "w7 w8"},
                      {"role": "user", "content": "w9"}, {"role": "assistant", "content": "w10 w11"}]},
    ]) + "\n")
    tok = tiny_tokenizer()
    first, second = load_examples(tok, data, max_length=1024)
    assert tok.convert_ids_to_tokens([t for t, m in zip(first.input_ids, first.assistant_mask) if m]) == ["w3", "w4", "w5", "<|end|>"]
    trained = tok.convert_ids_to_tokens([t for t, m in zip(second.input_ids, second.assistant_mask) if m])
    assert trained == ["w7", "w8", "<|end|>", "w10", "w11", "<|end|>"]
    data.write_text(json.dumps({"prompt": "w1"}) + "\n")
    with pytest.raises(DataError, match="without an answer"):
        load_examples(tok, data)


def test_cli_finetune_lora_end_to_end(tmp_path, capsys):
    from dspark_hf.cli import main as cli_main
    from dspark_hf.models.dspark.config_for_target import draft_config_for_target

    target = tiny_qwen3_target()
    target.save_pretrained(tmp_path / "target")
    tiny_tokenizer().save_pretrained(tmp_path / "target")
    draft = DSparkDraft(draft_config_for_target(target.config, markov_rank=8)).eval()  # shares the target's embeddings
    draft.save_pretrained(tmp_path / "draft")
    gen = torch.Generator().manual_seed(0)
    words = lambda n: " ".join(f"w{int(i)}" for i in torch.randint(0, 300, (n,), generator=gen))  # noqa: E731
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"prompt": words(6), "answer": words(20)}) + "\n" for _ in range(6)))
    common = ["finetune", "--draft", str(tmp_path / "draft"), "--target", str(tmp_path / "target"),
              "--data", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "adapter")]
    assert cli_main(common) == 2  # without --lora
    assert "add --lora" in capsys.readouterr().err
    args = common + ["--lora", "--r", "4", "--alpha", "8", "--batch-size", "2", "--epochs", "2", "--lr", "5e-3",
                     "--num-anchors", "8", "--merge-into", str(tmp_path / "merged"), "--threads", "1"]
    assert cli_main(args) == 0
    log = json.loads((tmp_path / "adapter" / "finetune_log.json").read_text())
    assert log["steps"] == 6 and len(log["history"]) == 6
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    # The merged draft, the adapter loaded onto the original draft, and the export agree.
    draft.bind_target_embeddings(target)
    adapted = load_adapter(draft, tmp_path / "adapter").get_base_model()
    merged = DSparkDraft.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    merged.bind_target_embeddings(target)
    torch.testing.assert_close(block_logits(merged), block_logits(adapted), atol=MERGE_ATOL, rtol=0)
    original = DSparkDraft.from_pretrained(tmp_path / "draft", dtype=torch.float32).eval()
    original.bind_target_embeddings(target)
    assert (block_logits(merged) - block_logits(original)).abs().max() > 1e-4  # training changed the draft
    ids = torch.randint(5, 300, (1, 10), generator=gen)
    config = GenerationConfig(max_new_tokens=30, do_sample=False)
    assert torch.equal(target.generate(ids, assistant_model=merged, generation_config=config),
                       target.generate(ids, generation_config=config))
    assert cli_main(["export", "--draft", str(tmp_path / "draft"), "--target", str(tmp_path / "target"),
                     "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "exported"), "--dtype", "keep"]) == 0
    exported = DSparkDraft.from_pretrained(tmp_path / "exported", dtype=torch.float32).eval()
    torch.testing.assert_close(block_logits(exported), block_logits(adapted), atol=MERGE_ATOL, rtol=0)
