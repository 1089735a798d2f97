"""The shipped default draft for the embedded SmolLM2-135M-Instruct: small, loadable, lossless, and it
drafts tokens the target accepts."""

import pytest
import torch
from safetensors import safe_open
from transformers import GenerationConfig

from dspark_hf.bundled.draft import DEFAULT_DRAFT_DIR, load_default_draft

pytestmark = pytest.mark.skipif(not (DEFAULT_DRAFT_DIR / "config.json").is_file(), reason="no default draft in this build")


def test_default_draft_is_at_most_32_mb_and_stores_no_target_embeddings():
    total = sum(p.stat().st_size for p in DEFAULT_DRAFT_DIR.iterdir() if p.is_file())
    assert total <= 32 * 1024 * 1024
    with safe_open(str(DEFAULT_DRAFT_DIR / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "embed_tokens.weight" not in keys and "lm_head.weight" not in keys
    assert any(k.startswith("markov_head.") for k in keys) and "confidence_head.proj.weight" in keys


def test_default_draft_is_exact_and_accepted_on_the_embedded_target():
    from dspark_hf.bundled.target import load_default_target

    torch.set_num_threads(1)
    target, tokenizer = load_default_target()
    draft = load_default_draft()
    assert draft.config.embeddings_from_target
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What do you like to do on weekends?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    mask = torch.ones_like(ids)
    plain = target.generate(ids, max_new_tokens=32, do_sample=False, attention_mask=mask)
    config = GenerationConfig(max_new_tokens=32, do_sample=False, dspark_policy="whole")
    spec = target.generate(ids, assistant_model=draft, generation_config=config, attention_mask=mask)
    assert torch.equal(plain, spec)
    # measured 1.24 here (32 tokens, greedy); an untrained draft stays at about 1.0
    assert draft.last_telemetry.tau > 1.15
