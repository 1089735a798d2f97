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
