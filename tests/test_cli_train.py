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


def test_init_from_continues_a_draft_keeping_its_shape(capsys, tmp_path):
    """``--init-from`` starts from a trained draft's weights and keeps its shape: the run's step-1 loss
    equals the loss of the given draft on that batch (a fresh draft's is far off), the shape flags given
    on the command line are overridden by the draft's (block 4, rank 8, layers 0,2 here), and a draft
    made for another target is refused in one line.
    Mutation run once: ``copy_trainable_weights`` made a no-op (the run starts from random weights)
    fails the step-1 loss comparison."""
    from test_training_resume import _cli
    from training_tiny import read_log

    torch.set_num_threads(1)
    base = _cli(tmp_path, tmp_path / "first", 4)[3:]
    assert main(base) == 0
    first_log = read_log(tmp_path / "first")
    # a second run from the first's draft, asking for another shape: the draft's shape wins
    argv = _cli(tmp_path, tmp_path / "second", 2)[3:]
    argv[argv.index("--block-size") + 1] = "6"
    assert main(argv + ["--init-from", str(tmp_path / "first" / "draft"), "--lr", "1e-9"]) == 0
    config = json.loads((tmp_path / "second" / "draft" / "config.json").read_text())
    assert config["block_size"] == 4 and config["markov_rank"] == 8 and config["target_layer_ids"] == [0, 2]
    stored = json.loads((tmp_path / "second" / "train_config.json").read_text())
    assert stored["extra"]["init_from"] == str(tmp_path / "first" / "draft") and stored["block_size"] == 4
    # the same batch as the first run's step 1, from the first run's final weights: lower than its step 1
    second_log = read_log(tmp_path / "second")
    fresh = tmp_path / "fresh"
    assert main(_cli(tmp_path, fresh, 1)[3:]) == 0
    assert read_log(fresh)[0]["loss"] == pytest.approx(first_log[0]["loss"], rel=1e-6)
    assert second_log[0]["loss"] < first_log[0]["loss"] - 1e-3
    # with lr ~0 the weights stay the given draft's (to float32 rounding)
    a = load_file(str(tmp_path / "first" / "draft" / "model.safetensors"))
    b = load_file(str(tmp_path / "second" / "draft" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    other = tmp_path / "other"
    other.mkdir()
    capsys.readouterr()
    argv = _cli(other, other / "out", 2)[3:]
    import transformers

    big = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, eos_token_id=95, bos_token_id=1, pad_token_id=0))
    big.save_pretrained(other / "target")  # hidden size 48: the first draft reads 32-wide features
    assert main(argv + ["--init-from", str(tmp_path / "first" / "draft")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("dspark train: error: ") and "first/draft" in last


def test_cpu_bf16_autocasts_the_step_and_stays_close_to_float32(tmp_path):
    """``--cpu-bf16`` runs the step (target logits, draft forward and backward) under CPU bf16 autocast:
    its logged losses differ from the float32 run's (so autocast is on) by under 3 % (tolerance for bf16's
    8-bit mantissa over two steps of a tiny model); the saved draft stays float32.
    Mutation run once: ``mixed_precision`` ignoring ``cpu_bf16`` (returns "no" on CPU) makes the losses
    equal and fails the first assertion."""
    from test_training_resume import _cli
    from training_tiny import read_log

    import subprocess

    # separate processes: accelerate keeps one mixed-precision setting per process
    subprocess.run(_cli(tmp_path, tmp_path / "fp32", 2), check=True, capture_output=True)
    subprocess.run(_cli(tmp_path, tmp_path / "bf16", 2) + ["--cpu-bf16"], check=True, capture_output=True)
    fp32, bf16 = read_log(tmp_path / "fp32"), read_log(tmp_path / "bf16")
    assert [r["loss"] for r in fp32] != [r["loss"] for r in bf16]
    for a, b in zip(fp32, bf16, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=3e-2)
    weights = load_file(str(tmp_path / "bf16" / "draft" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())


def test_a_distillation_shard_ends_after_its_part_and_a_plain_run_merges_the_parts(capsys, tmp_path):
    """`dspark train --self-distill --prepare-only --distill-shard I/N` answers its prompts, says where its part
    is and exits 0 (no training, no merged file); the run without the flag merges both parts and prepares them.
    Mutation run once: the early return after a shard removed in cli/train.py (the shard run goes on to read
    the merged file that does not exist yet) fails with exit 2, "Training data file not found"."""
    from transformers import AutoTokenizer

    from dspark_hf.bundled.target import default_target_dir
    from test_training_data import tiny_answerer

    tokenizer = AutoTokenizer.from_pretrained(default_target_dir())
    target_dir = tmp_path / "target"
    tiny_answerer(tokenizer, layers=2).save_pretrained(target_dir)
    tokenizer.save_pretrained(target_dir)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Count to {n}."}) + "\n" for n in range(5)))
    out = tmp_path / "sd"
    argv = ["train", "--target", str(target_dir), "--data", str(prompts), "--output-dir", str(out), "--self-distill",
            "--prepare-only", "--max-new-tokens", "3", "--distill-batch-size", "2", "--target-layer-ids", "0,1",
            "--threads", "1", "--no-progress"]
    for i in (0, 1):
        assert main(argv + ["--distill-shard", f"{i}/2"]) == 0
        part = out / f"distilled.part-{i}-of-2.jsonl"
        assert f"Shard {i}/2 of the self-distillation is in {part}" in capsys.readouterr().out
        assert sorted(json.loads(line)["index"] for line in part.read_text().splitlines()) == list(range(i, 5, 2))
        assert not (out / "distilled.jsonl").exists()
    assert main(argv) == 0
    assert "5 sequences ready" in capsys.readouterr().out
    assert sorted(json.loads(line)["index"] for line in (out / "distilled.jsonl").read_text().splitlines()) == list(range(5))
    assert not list(out.glob("distilled.part-*"))
