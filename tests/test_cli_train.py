"""`dspark train` command line: one-line errors before any model is loaded; a tiny end-to-end run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from dspark_hf.cli import main


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--data", "/nonexistent/data.jsonl"], "Training data file not found: /nonexistent/data.jsonl"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0."),
    ],
)
def test_errors_are_one_line(capsys, tmp_path, extra, message):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    argv = ["train", "--data", str(data), "--output-dir", str(tmp_path / "out")] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dspark train: error: ") and message in err and "\n" not in err


def test_tiny_run_saves_a_loadable_draft_without_target_embeddings(tmp_path):
    from training_tiny import tiny_examples, tiny_target
    from test_training_resume import _cli

    argv = _cli(tmp_path, tmp_path / "out", 4)[3:]  # drop "python -m dspark_hf.cli"
    torch.set_num_threads(1)
    assert main(argv + ["--save-dtype", "bfloat16"]) == 0
    weights = load_file(str(tmp_path / "out" / "draft" / "model.safetensors"))
    assert "embed_tokens.weight" not in weights and "lm_head.weight" not in weights
    assert all(t.dtype == torch.bfloat16 for t in weights.values())
    config = json.loads((tmp_path / "out" / "draft" / "config.json").read_text())
    assert config["embeddings_from_target"] is True and config["markov_rank"] == 8
    from dspark_hf import DSparkDraft

    draft = DSparkDraft.from_pretrained(tmp_path / "out" / "draft", dtype=torch.float32)
    draft.bind_target_embeddings(tiny_target())
    assert draft.markov_head is not None and draft.confidence_head is not None
    log = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]


def test_export_deepspec_is_refused_before_training_for_a_family_without_that_layout(capsys, tmp_path):
    from test_training_resume import _cli

    argv = _cli(tmp_path, tmp_path / "out", 2)[3:] + ["--export", "deepspec"]  # a tiny Llama target
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (loading progress bars come before it)
    assert last.startswith("dspark train: error: ") and "DeepSpec layout exists only for Qwen3 and Gemma4" in last
    assert not (tmp_path / "out" / "draft").exists()


def test_export_deepspec_after_training_loads_back_as_the_trained_draft(tmp_path):
    """A tiny Qwen3 target: the released-layout export loads with our loader and equals the trained draft
    (bf16 export, so compared with the trained weights rounded to bf16)."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    from dspark_hf import DSparkDraft
    from training_tiny import tiny_examples

    torch.manual_seed(0)
    target = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, tie_word_embeddings=False,
    )).eval()
    target.save_pretrained(tmp_path / "target")
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
                            unk_token="<unk>").save_pretrained(tmp_path / "target")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"input_ids": e.input_ids, "assistant_mask": e.assistant_mask}) + "\n" for e in tiny_examples()))
    out = tmp_path / "out"
    argv = ["train", "--target", str(tmp_path / "target"), "--data", str(data), "--output-dir", str(out), "--max-steps", "2",
            "--batch-size", "2", "--num-anchors", "4", "--num-layers", "1", "--markov-rank", "8", "--block-size", "4",
            "--no-progress", "--threads", "1", "--export", "deepspec"]
    assert main(argv) == 0
    exported = json.loads((out / "deepspec" / "config.json").read_text())
    assert exported["architectures"] == ["Qwen3DSparkModel"] and exported["model_type"] == "qwen3"
    tensors = load_file(str(out / "deepspec" / "model.safetensors"))
    assert "embed_tokens.weight" in tensors and "lm_head.weight" in tensors  # the released layout carries them
    assert torch.equal(tensors["lm_head.weight"], target.lm_head.weight.detach().to(torch.bfloat16))
    trained = DSparkDraft.from_pretrained(out / "draft", dtype=torch.float32)
    reloaded = DSparkDraft.from_pretrained(out / "deepspec", dtype=torch.float32)
    assert reloaded.config.block_size == 4 and reloaded.config.markov_rank == 8
    own = {k: v for k, v in trained.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    back = reloaded.state_dict()
    assert own and all(torch.equal(v.to(torch.bfloat16).float(), back[k]) for k, v in own.items())
