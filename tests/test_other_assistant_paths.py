"""After ``import dspark_hf`` every other assisted-generation path of transformers runs its own code."""

from __future__ import annotations

import torch
from transformers.generation import candidate_generator as cg
from transformers.generation.utils import GenerationMixin

from conftest import tiny_qwen3_target
from dspark_hf.integration.generation_hook import install_generation_hook


def count_calls(monkeypatch, cls) -> list:
    calls = []
    original = cls.get_candidates

    def spy(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "get_candidates", spy)
    return calls


def test_prompt_lookup_is_untouched(monkeypatch):
    target = tiny_qwen3_target()
    calls = count_calls(monkeypatch, cg.PromptLookupCandidateGenerator)
    ids = torch.tensor([[5, 6, 7, 8, 5, 6, 7, 8, 5, 6]])
    out = target.generate(ids, prompt_lookup_num_tokens=3, max_new_tokens=16, do_sample=False)
    assert calls and set(calls) == {"PromptLookupCandidateGenerator"}
    assert torch.equal(out, target.generate(ids, max_new_tokens=16, do_sample=False))


def test_assistant_model_is_untouched(monkeypatch):
    target, assistant = tiny_qwen3_target(seed=0), tiny_qwen3_target(seed=1)
    calls = count_calls(monkeypatch, cg.AssistedCandidateGenerator)
    ids = torch.randint(5, 300, (1, 7), generator=torch.Generator().manual_seed(0))
    out = target.generate(ids, assistant_model=assistant, max_new_tokens=16, do_sample=False)
    assert calls and set(calls) == {"AssistedCandidateGenerator"}
    assert torch.equal(out, target.generate(ids, max_new_tokens=16, do_sample=False))


def test_hook_installs_once():
    wrapped = GenerationMixin._get_candidate_generator
    install_generation_hook()
    install_generation_hook()
    assert GenerationMixin._get_candidate_generator is wrapped
    original = wrapped._dspark_hf_original
    assert not hasattr(original, "_dspark_hf_original"), "wrapped twice"
